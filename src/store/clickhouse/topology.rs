//! One server or a cluster (`--clickhouse-cluster NAME`). On a cluster every table is a replicated
//! local table on each shard (`<table>_local`, `ON CLUSTER`) with a `Distributed` table of the
//! plain name over them, sharded by MCP; the store reads and writes the plain names either way, so
//! only DDL, retention and the few reads of `system` tables differ.

/// Where the store's tables live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topology {
    Single,
    Cluster(String),
}

impl Topology {
    pub fn cluster(&self) -> Option<&str> {
        match self {
            Topology::Single => None,
            Topology::Cluster(name) => Some(name),
        }
    }

    /// ` ON CLUSTER <name>` on a cluster, nothing on one server.
    pub fn on_cluster(&self) -> String {
        self.cluster()
            .map(|c| format!(" ON CLUSTER {c}"))
            .unwrap_or_default()
    }

    /// The table that holds `table`'s rows on each server (the target of ALTERs).
    pub fn local(&self, table: &str) -> String {
        match self {
            Topology::Single => table.to_string(),
            Topology::Cluster(_) => format!("{table}_local"),
        }
    }

    /// The statements that create `table` from its one-server DDL `ddl` (`CREATE TABLE IF NOT
    /// EXISTS <db>.<table> (…) ENGINE = <…MergeTree>[(args)] …`): itself on one server; on a cluster
    /// a replicated local table on every shard and a Distributed table sharded by `shard_key`.
    pub fn create_table(
        &self,
        ddl: &str,
        database: &str,
        table: &str,
        shard_key: &str,
    ) -> Vec<String> {
        let Topology::Cluster(cluster) = self else {
            return vec![ddl.to_string()];
        };
        let local = format!("{table}_local");
        let name = format!("{database}.{table} ");
        let replicated = ddl.replacen(
            &name,
            &format!("{database}.{local} ON CLUSTER {cluster} "),
            1,
        );
        let path = format!("'/clickhouse/tables/{{shard}}/{database}/{local}', '{{replica}}'");
        let replicated = match replicated.split_once("ENGINE = ") {
            Some((head, engine)) => {
                let engine_name_end = engine
                    .find(|c: char| !c.is_ascii_alphanumeric())
                    .unwrap_or(engine.len());
                let (engine_name, rest) = engine.split_at(engine_name_end);
                let rest = match rest.strip_prefix('(') {
                    Some(args) => format!("({path}, {args}"),
                    None => format!("({path}){rest}"),
                };
                format!("{head}ENGINE = Replicated{engine_name}{rest}")
            }
            None => replicated,
        };
        vec![
            replicated,
            format!(
                "CREATE TABLE IF NOT EXISTS {database}.{table} ON CLUSTER {cluster} AS {database}.{local} \
                 ENGINE = Distributed({cluster}, {database}, {local}, {shard_key})"
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_gets_replicated_local_tables_and_a_distributed_one() {
        let cluster = Topology::Cluster("c".into());
        let ddl = "CREATE TABLE IF NOT EXISTS db.t (a String) ENGINE = ReplacingMergeTree(v) PARTITION BY d ORDER BY a";
        assert_eq!(
            cluster.create_table(ddl, "db", "t", "cityHash64(a)"),
            [
                "CREATE TABLE IF NOT EXISTS db.t_local ON CLUSTER c (a String) ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/db/t_local', '{replica}', v) PARTITION BY d ORDER BY a",
                "CREATE TABLE IF NOT EXISTS db.t ON CLUSTER c AS db.t_local ENGINE = Distributed(c, db, t_local, cityHash64(a))",
            ]
        );
        let plain = "CREATE TABLE IF NOT EXISTS db.t (a String) ENGINE = MergeTree PARTITION BY d ORDER BY a";
        assert_eq!(
            cluster.create_table(plain, "db", "t", "rand()")[0],
            "CREATE TABLE IF NOT EXISTS db.t_local ON CLUSTER c (a String) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/db/t_local', '{replica}') PARTITION BY d ORDER BY a"
        );
        assert_eq!(
            Topology::Single.create_table(plain, "db", "t", "rand()"),
            [plain]
        );
        assert_eq!(cluster.local("t"), "t_local");
        assert_eq!(cluster.on_cluster(), " ON CLUSTER c");
        assert_eq!(Topology::Single.on_cluster(), "");
    }
}
