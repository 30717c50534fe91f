//! Ingest throughput: acknowledged reports per second over HTTP at several client concurrencies,
//! with every acknowledgement fsynced. Group commit should make throughput grow with concurrency
//! (one fsync covers every waiting request) instead of staying at the disk's fsync rate.
//! Then batched reports end to end: 200,000 unique records in the seed's standard format (~0.9 KB)
//! in batches of 500 from 4 clients, acknowledged (fsynced) and then stored, in ClickHouse and in
//! SQLite. Each of three rounds puts the ClickHouse pipeline beside ClickHouse's own JSONEachRow
//! insert of the very same rows, with the CPU each used per 1,000 events. `MCP_BENCH_BATCH_RECORDS`
//! changes the count, `MCP_BENCH_ROUNDS` the rounds; `MCP_BENCH_ONLY=reading` stops after the
//! one-thread reading table (what a profile of the reader runs). Run with `make bench`.

use test_support::clickhouse as clickhouse_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use mcp_coordinator::interaction::{EventKind, Fields, InteractionEvent};
use mcp_coordinator::pipeline::{Spool, SpoolConfig};

const KEY: &str = "mcpk_bench_key_0123456789abcdef";

#[tokio::main]
async fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    // As the binary does.
    mcp_coordinator::allocator::prefer_small_pages();
    let dir = std::env::temp_dir().join(format!("mcp-ingest-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let _ = rustls::crypto::ring::default_provider().install_default();

    if std::env::var("MCP_BENCH_ONLY").is_ok_and(|only| only == "reading") {
        batched(&dir).await;
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }

    println!();
    println!("spool appends (in process, fsync per acknowledgement)");
    println!("| concurrency | reports | reports/s | reports per fsync |");
    println!("|------------:|--------:|----------:|------------------:|");
    for concurrency in [1usize, 8, 64] {
        let spool_dir = dir.join(format!("spool-{concurrency}"));
        let (spool, _reader) = Spool::open(SpoolConfig {
            dir: spool_dir,
            segment_bytes: 16 << 20,
            max_bytes: 1 << 30,
        })
        .expect("spool");
        let total = 400 * concurrency.min(8);
        let started = Instant::now();
        futures::stream::iter(0..total)
            .map(|i| {
                let spool = spool.clone();
                async move {
                    let e = InteractionEvent::new(
                        format!("b{i}"),
                        "m".into(),
                        EventKind::Start,
                        0,
                        Fields::default(),
                    );
                    spool.append(&[e]).await.expect("append");
                }
            })
            .buffer_unordered(concurrency)
            .collect::<Vec<_>>()
            .await;
        let secs = started.elapsed().as_secs_f64();
        println!(
            "| {concurrency:>11} | {total:>7} | {:>9.0} | {:>17.1} |",
            total as f64 / secs,
            total as f64 / spool.commits().max(1) as f64
        );
    }

    // Over HTTP, through the whole ingest server with the embedded store.
    let store = mcp_coordinator::store::sqlite::SqliteStore::open(&dir.join("interactions.db"))
        .expect("store");
    let running = start_ingest(&dir, "http", Arc::new(store)).await;
    let url = format!("http://{}/v1/interactions", running.addr);
    let http = reqwest::Client::builder().build().expect("client");
    println!();
    println!("HTTP POST /v1/interactions (ingest server, SQLite store, 2-core machine)");
    println!("| concurrency | reports | reports/s | p50 ack ms | p99 ack ms |");
    println!("|------------:|--------:|----------:|-----------:|-----------:|");
    for concurrency in [1usize, 4, 16, 64] {
        let total = 500 * concurrency.min(8);
        let started = Instant::now();
        let mut latencies: Vec<f64> = futures::stream::iter(0..total)
            .map(|i| {
                let (http, url) = (http.clone(), url.clone());
                async move {
                    let t = Instant::now();
                    let r = http
                        .post(&url)
                        .bearer_auth(KEY)
                        .json(&serde_json::json!({"interaction_id": format!("c{concurrency}_{i}"), "request_data": {"request_type": "bench"}}))
                        .send()
                        .await
                        .expect("send");
                    assert_eq!(r.status().as_u16(), 202);
                    t.elapsed().as_secs_f64() * 1000.0
                }
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
        let secs = started.elapsed().as_secs_f64();
        latencies.sort_by(f64::total_cmp);
        let pct = |p: f64| {
            latencies[((p * latencies.len() as f64).ceil() as usize).clamp(1, latencies.len()) - 1]
        };
        println!(
            "| {concurrency:>11} | {total:>7} | {:>9.0} | {:>10.2} | {:>10.2} |",
            total as f64 / secs,
            pct(0.5),
            pct(0.99)
        );
    }
    batched(&dir).await;
    let _ = std::fs::remove_dir_all(&dir);
}

const BATCH: usize = 500;
const CLIENTS: usize = 4;

/// Record `i` in the seed's standard format, about 0.9 KB.
fn seed_record(i: usize, base_ms: i64) -> serde_json::Value {
    let at = base_ms + i as i64;
    let request_type = ["ocr_processing", "translation", "summarize"][i % 3];
    let failed = i.is_multiple_of(20);
    let time = |ms: i64| {
        jiff::Timestamp::from_millisecond(ms)
            .map(|t| t.to_string())
            .unwrap_or_default()
    };
    serde_json::json!({
        "interaction_id": format!("int_20261202_120000_{i:016x}"),
        "mcp_id": "bench_tool_mcp_001",
        "timestamp": time(at),
        "request_data": {
            "user_id": format!("user_{}", i % 5000),
            "request_type": request_type,
            "input_size": 1_024_000 + i % 4096,
            "parameters": {"quality_level": "high", "language": "en", "output_format": "json", "dpi": 300}
        },
        "processing_data": {
            "start_time": time(at),
            "end_time": time(at + 5_333),
            "processing_time": 5.333 + (i % 100) as f64 / 100.0,
            "adapter_used": "tesseract_v5_adapter",
            "steps_executed": ["validation", "preprocessing", "ocr", "postprocessing", "formatting"],
            "resource_usage": {"cpu_usage": 45.2, "memory_usage": 512.5, "gpu_usage": 0.0}
        },
        "result_data": {
            "success": !failed,
            "output_size": 2048 + i % 1000,
            "quality_score": 0.95,
            "confidence": 0.92,
            "error_code": if failed { serde_json::json!("OCR_TIMEOUT") } else { serde_json::Value::Null },
            "error_message": if failed { serde_json::json!("processing took longer than the 30 s limit") } else { serde_json::Value::Null }
        },
        "metadata": {
            "mcp_version": "1.2.3",
            "coordinator_version": "0.1.0",
            "environment": "production",
            "region": "eu-west-1"
        }
    })
}

/// Reading the batches on one thread, the request path's largest part, beside serde_json reading
/// the same text into a `Value` and only checking it is JSON: CPU alone, no I/O, so steadier than
/// the end-to-end figures. The best of five interleaved passes of each.
fn reading(bodies: &[bytes::Bytes], records: usize) {
    fn pass(bodies: &[bytes::Bytes], read: impl Fn(&str) -> usize) -> f64 {
        let started = Instant::now();
        let mut seen = 0;
        for body in bodies {
            let text = std::str::from_utf8(body).expect("UTF-8");
            seen += read(text);
        }
        std::hint::black_box(seen);
        started.elapsed().as_secs_f64()
    }
    let ours = |text: &str| {
        mcp_coordinator::interaction::parse_records(text, EventKind::Record)
            .expect("a batch")
            .iter()
            .filter(|r| r.is_ok())
            .count()
    };
    let value = |text: &str| {
        serde_json::from_str::<serde_json::Value>(text)
            .expect("JSON")
            .as_array()
            .map_or(0, Vec::len)
    };
    let tokens = |text: &str| {
        serde_json::from_str::<serde::de::IgnoredAny>(text).expect("JSON");
        1
    };
    let mut best = [f64::MAX; 3];
    for _ in 0..5 {
        best[0] = best[0].min(pass(bodies, ours));
        best[1] = best[1].min(pass(bodies, value));
        best[2] = best[2].min(pass(bodies, tokens));
    }
    println!();
    println!("reading {records} records of those batches on one thread (CPU only; best of 5)");
    println!("| reader | records/s | time ÷ serde_json into a Value |");
    println!("| --- | ---: | ---: |");
    for (name, seconds) in [
        ("ingest's batch reader (checked records)", best[0]),
        ("serde_json into a `Value`", best[1]),
        ("serde_json checking it is JSON (`IgnoredAny`)", best[2]),
    ] {
        println!(
            "| {name} | {:.0} | {:.2} |",
            records as f64 / seconds,
            seconds / best[1]
        );
    }
}

/// An in-process ingest server over `store`, spooling in `dir/spool-<name>`, with the bench's
/// key and no signatures.
async fn start_ingest(
    dir: &std::path::Path,
    name: &str,
    store: Arc<dyn mcp_coordinator::store::InteractionStore>,
) -> mcp_coordinator::ingest::RunningIngest {
    let keys = mcp_coordinator::trust::keys::KeyRing::default();
    keys.set("bench_tool_mcp_001", KEY);
    mcp_coordinator::ingest::start(
        mcp_coordinator::ingest::IngestConfig {
            flush_interval: Duration::from_millis(200),
            drain_timeout: Duration::from_secs(10),
            signing: mcp_coordinator::trust::signing::SigningPolicy::Off,
            ..mcp_coordinator::ingest::IngestConfig::new(
                "127.0.0.1:0".parse().expect("addr"),
                dir.join(format!("spool-{name}")),
            )
            .expect("ingest config")
        },
        store,
        Arc::new(keys),
        Arc::new(mcp_coordinator::trust::keys::ReaderTokens::default()),
        futures::future::pending(),
    )
    .await
    .expect("ingest starts")
}

/// CPU seconds (user and system) a process has used so far, from `/proc/<pid>/stat`; 0 where
/// that cannot be read. Ticks are 1/100 s on Linux.
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name (which may hold spaces), which ends at the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU used by this process (the bench's clients and the ingest server) and by ClickHouse.
#[derive(Clone, Copy, Default)]
struct Cpu {
    ours: f64,
    clickhouse: f64,
}

impl Cpu {
    fn now(clickhouse: Option<u32>) -> Self {
        Cpu {
            ours: cpu_seconds("self"),
            clickhouse: clickhouse.map_or(0.0, |pid| cpu_seconds(&pid.to_string())),
        }
    }

    /// Milliseconds of CPU per 1,000 events since `before`.
    fn per_thousand(self, before: Cpu, events: usize) -> Cpu {
        let per = |a: f64, b: f64| (a - b) * 1_000.0 * 1_000.0 / events as f64;
        Cpu {
            ours: per(self.ours, before.ours),
            clickhouse: per(self.clickhouse, before.clickhouse),
        }
    }
}

/// What one path through the ingest server measured.
struct Through {
    acked: f64,
    stored: f64,
    /// CPU per 1,000 events, from the first request until all were stored.
    cpu: Cpu,
}

/// Acknowledged and stored rates of `records` batches through a fresh ingest server over `store`;
/// `stored` counts what the store holds; `clickhouse` is the server whose CPU counts too.
async fn through_ingest<F, Fut>(
    dir: &std::path::Path,
    name: &str,
    store: Arc<dyn mcp_coordinator::store::InteractionStore>,
    bodies: &[bytes::Bytes],
    records: usize,
    clickhouse: Option<u32>,
    stored: F,
) -> Through
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = usize>,
{
    let running = start_ingest(dir, name, store).await;
    let url = format!("http://{}/v1/interactions:batch", running.addr);
    let http = reqwest::Client::builder().build().expect("client");
    let cpu_before = Cpu::now(clickhouse);
    let started = Instant::now();
    futures::stream::iter(bodies)
        .map(|body| {
            let (http, url) = (http.clone(), url.clone());
            async move {
                let r = http
                    .post(&url)
                    .bearer_auth(KEY)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .expect("send");
                assert_eq!(
                    r.status().as_u16(),
                    200,
                    "{}",
                    r.text().await.unwrap_or_default()
                );
            }
        })
        .buffer_unordered(CLIENTS)
        .collect::<Vec<_>>()
        .await;
    let acked = started.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(600);
    while stored().await < records {
        assert!(
            Instant::now() < deadline,
            "{name}: not all records were stored"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let done = started.elapsed().as_secs_f64();
    Through {
        acked: records as f64 / acked,
        stored: records as f64 / done,
        cpu: Cpu::now(clickhouse).per_thousand(cpu_before, records),
    }
}

async fn batched(dir: &std::path::Path) {
    let records: usize = std::env::var("MCP_BENCH_BATCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let base_ms = jiff::Timestamp::now().as_millisecond() - 3_600_000;
    // Each request sends a body shared, not copied, as a client replaying prepared bodies (wrk)
    // does: the clients run in this process, and their CPU counts against the server's.
    let bodies: Vec<bytes::Bytes> = (0..records)
        .step_by(BATCH)
        .map(|first| {
            let batch: Vec<serde_json::Value> = (first..(first + BATCH).min(records))
                .map(|i| seed_record(i, base_ms))
                .collect();
            serde_json::to_vec(&batch).expect("JSON").into()
        })
        .collect();
    let record_bytes = bodies.iter().map(|b| b.len()).sum::<usize>() / records;
    reading(&bodies, records);
    if std::env::var("MCP_BENCH_ONLY").is_ok_and(|only| only == "reading") {
        return;
    }

    let server = clickhouse_support::ClickHouseServer::start("ingest-bench");
    let clickhouse_pid = server.pid();
    let rounds: usize = std::env::var("MCP_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);
    // The machine's speed drifts by several times from one minute to the next (ClickHouse's own
    // insert above all: creating a part's files is most of its work here), so each round puts
    // the pipeline and ClickHouse's own insert side by side, and the ratio is taken per round.
    let mut measured = Vec::new();
    for round in 1..=rounds {
        let config = server.config();
        let database = config.database.clone();
        let clickhouse = mcp_coordinator::store::clickhouse::ClickHouseStore::connect(&config)
            .await
            .expect("ClickHouse");
        let count_sql = format!("SELECT count() FROM {database}.interaction_events");
        let through = through_ingest(
            dir,
            &format!("clickhouse-{round}"),
            Arc::new(clickhouse),
            &bodies,
            records,
            clickhouse_pid,
            || async { server.sql(&count_sql).await.trim().parse().unwrap_or(0) },
        )
        .await;
        let own = own_insert(&server, &database, clickhouse_pid).await;
        measured.push((through, own));
    }

    let sqlite_path = dir.join("batched.db");
    let sqlite = mcp_coordinator::store::sqlite::SqliteStore::open(&sqlite_path).expect("SQLite");
    let through_sqlite = through_ingest(
        dir,
        "sqlite",
        Arc::new(sqlite),
        &bodies,
        records,
        None,
        || {
            let path = sqlite_path.clone();
            async move {
                rusqlite::Connection::open(&path)
                    .and_then(|c| {
                        c.query_row("SELECT count(*) FROM interactions", [], |r| {
                            r.get::<_, i64>(0)
                        })
                    })
                    .map_or(0, |n| n as usize)
            }
        },
    )
    .await;

    println!();
    println!(
        "batched reports: {records} unique records in the seed's format (~{record_bytes} bytes each), batches of {BATCH}, {CLIENTS} clients, every acknowledgement fsynced; {rounds} rounds, each the pipeline into a fresh database and then ClickHouse 18.16 inserting the very same rows itself (JSONEachRow, 5,000-row inserts, 1 / 4 clients)"
    );
    println!("CPU: milliseconds per 1,000 events, of this process (the bench's clients and the ingest server) and of ClickHouse");
    println!("| round | ClickHouse's own insert, 1 / 4 clients (events/s) | ingest → ClickHouse, acknowledged | stored end to end | stored ÷ own (4 clients) | CPU ms/1k: bench process | CPU ms/1k: ClickHouse (pipeline / own insert) |");
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let mut ratios = Vec::new();
    for (round, (through, own)) in measured.iter().enumerate() {
        let ratio = through.stored / own.four;
        ratios.push(ratio);
        println!(
            "| {} | {:.0} / {:.0} | {:.0} | {:.0} | {ratio:.2} | {:.1} | {:.1} / {:.1} |",
            round + 1,
            own.one,
            own.four,
            through.acked,
            through.stored,
            through.cpu.ours,
            through.cpu.clickhouse,
            own.cpu.clickhouse
        );
    }
    let median = |mut values: Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    println!(
        "| median | {:.0} / {:.0} | {:.0} | {:.0} | {:.2} | {:.1} | {:.1} / {:.1} |",
        median(measured.iter().map(|(_, o)| o.one).collect()),
        median(measured.iter().map(|(_, o)| o.four).collect()),
        median(measured.iter().map(|(t, _)| t.acked).collect()),
        median(measured.iter().map(|(t, _)| t.stored).collect()),
        median(ratios),
        median(measured.iter().map(|(t, _)| t.cpu.ours).collect()),
        median(measured.iter().map(|(t, _)| t.cpu.clickhouse).collect()),
        median(measured.iter().map(|(_, o)| o.cpu.clickhouse).collect()),
    );
    println!();
    println!("| ingest → SQLite | events/s | CPU ms/1k: bench process |");
    println!("| --- | ---: | ---: |");
    let Through { acked, stored, cpu } = through_sqlite;
    println!("| acknowledged | {acked:.0} | |");
    println!("| stored end to end | {stored:.0} | {:.1} |", cpu.ours);
}

/// ClickHouse's own insert of the rows in `database`: exported as JSONEachRow, inserted again in
/// 5,000-row inserts into a table of the same layout, from 1 and then from 4 clients.
struct OwnInsert {
    one: f64,
    four: f64,
    /// At 4 clients.
    cpu: Cpu,
}

async fn own_insert(
    server: &clickhouse_support::ClickHouseServer,
    database: &str,
    clickhouse_pid: Option<u32>,
) -> OwnInsert {
    let rows: Vec<String> = server
        .sql(&format!(
            "SELECT * FROM {database}.interaction_events FORMAT JSONEachRow"
        ))
        .await
        .lines()
        .map(str::to_string)
        .collect();
    let mut rates = Vec::new();
    let mut cpu = Cpu::default();
    for clients in [1usize, 4] {
        let copy = format!("{database}.copy_{clients}");
        server
            .sql(&format!(
                "CREATE TABLE {copy} AS {database}.interaction_events"
            ))
            .await;
        let inserts: Vec<String> = rows.chunks(5_000).map(|c| c.join("\n")).collect();
        let cpu_before = Cpu::now(clickhouse_pid);
        let started = Instant::now();
        futures::stream::iter(&inserts)
            .map(|body| {
                let copy = &copy;
                async move {
                    server
                        .sql(&format!("INSERT INTO {copy} FORMAT JSONEachRow\n{body}"))
                        .await;
                }
            })
            .buffer_unordered(clients)
            .collect::<Vec<_>>()
            .await;
        rates.push(rows.len() as f64 / started.elapsed().as_secs_f64());
        cpu = Cpu::now(clickhouse_pid).per_thousand(cpu_before, rows.len());
    }
    OwnInsert {
        one: rates[0],
        four: rates[1],
        cpu,
    }
}
