//! Smart routing. So far: the weight formula (`weights`), a pure function the controller will
//! apply with the ingest server's metrics (issue 5).

pub mod weights;
