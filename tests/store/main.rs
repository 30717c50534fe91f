//! The interaction store: the contract both stores pass, and ClickHouse's layout, rollups, cluster,
//! outages and the SQL on a current ClickHouse.

mod cluster;
mod contract;
mod layout;
mod modern_sql;
mod outage;
mod rollups;
