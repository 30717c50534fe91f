//! Smart routing: the weight formula the controller publishes in status (`weights`), the routing
//! table it publishes per namespace (`table`), and the route decision the ingest server answers
//! from the interactions it sees (`router`).

mod learned;
mod pick;
pub mod router;
pub mod table;
pub mod weights;
