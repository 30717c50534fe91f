//! Real peers run as processes: scripts of the official MCP SDKs (TypeScript under `.tools/npm`,
//! where `make tools` installs the SDK; Python from PyPI).

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The repository's root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `node tests/node/SCRIPT`, run beside the TypeScript SDK (the script is copied there so its
/// imports resolve), killed when dropped.
pub fn node_script(script: &str) -> tokio::process::Command {
    let npm = repo_root().join(".tools/npm");
    let target = npm.join(script);
    std::fs::copy(repo_root().join("tests/node").join(script), &target)
        .expect("copy the script beside the SDK (make tools installs it)");
    let mut command = tokio::process::Command::new("node");
    command.arg(target).current_dir(npm).kill_on_drop(true);
    command
}

/// Waits until something listens on `port` of loopback (at most 30 s).
pub async fn wait_listening(port: u16, what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} did not listen on {port}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
