//! The interaction store: the contract both stores pass, and ClickHouse's layout, rollups, cluster,
//! outages, the SQL on a current ClickHouse, and the settings the chart renders for the ClickHouse
//! it deploys.

mod chart_config;
mod cluster;
mod contract;
mod layout;
mod modern_sql;
mod outage;
mod rollups;
