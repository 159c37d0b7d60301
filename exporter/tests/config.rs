//! Configuration values as careless users write them: `check-config` and `run` refuse every
//! number out of range, naming the key, whether it comes from the file, a flag or the
//! environment.

mod common;

use std::time::Duration;

use common::{bin, run_bounded};

const TIMEOUT: Duration = Duration::from_secs(60);

#[test]
fn out_of_range_numbers_are_refused_with_their_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    // `run` must stop at the configuration: its outputs would otherwise be written here.
    let outputs = format!(
        "segment = {:?}\nprom = {:?}\njson = {:?}\n",
        dir.path().join("segment"),
        dir.path().join("out.prom"),
        dir.path().join("metrics.json")
    );
    let cases = [
        ("[thresholds]\np95_warning_ms = -1.0\n", "[thresholds] p95_warning_ms = -1: must be a finite number >= 0"),
        ("[thresholds]\np95_critical_ms = nan\n", "[thresholds] p95_critical_ms = NaN: must be a finite number >= 0"),
        (
            "[thresholds]\nerror_rate_critical = 1.5\n",
            "[thresholds] error_rate_critical = 1.5: must be a number from 0 to 1",
        ),
        (
            "[thresholds]\nmemory_growth_warning_mb_per_hour = inf\n",
            "[thresholds] memory_growth_warning_mb_per_hour = inf: must be a finite number >= 0",
        ),
        (
            "[thresholds]\ncache_hit_rate_warning = 0.2\n",
            "[thresholds] cache_hit_rate_warning = 0.2 must be >= cache_hit_rate_critical = 0.5",
        ),
        ("interval = \"1ms\"\n", "interval = \"1ms\": must be from 10ms to 24h"),
        ("history = 0\n", "history = 0: must keep from 1 to 10000 snapshots"),
        ("bucket_resolution = 16\n", "bucket_resolution = 16: must be 1, 2, 4 or 8"),
        ("[capacity]\nevents = 0\n", "[capacity] events = 0: must be from 1 to 65536"),
    ];
    for (text, expected) in cases {
        // Tables come last in TOML: the outputs go first.
        std::fs::write(&config, format!("{outputs}{text}")).unwrap();
        for command in ["check-config", "run"] {
            let output = run_bounded(bin().arg(command).arg("--config").arg(&config), TIMEOUT);
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.code(), Some(1), "{command} {text}: {stderr}");
            assert_eq!(stderr.lines().count(), 1, "{stderr}");
            assert!(stderr.starts_with(&format!("coordmetrics: error: {expected}")), "{command} {text}: {stderr}");
        }
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "run wrote nothing");

    // From a flag and from the environment, with the same words.
    std::fs::write(&config, &outputs).unwrap();
    let flag = run_bounded(bin().args(["run", "--history", "20000", "--config"]).arg(&config), TIMEOUT);
    assert!(String::from_utf8_lossy(&flag.stderr).contains("history = 20000: must keep from 1 to 10000 snapshots"));
    let env =
        run_bounded(bin().arg("run").arg("--config").arg(&config).env("COORDMETRICS_INTERVAL", "1000years"), TIMEOUT);
    assert!(String::from_utf8_lossy(&env.stderr).contains("interval = \"1000years\": must be from 10ms to 24h"));
    assert!(!flag.status.success() && !env.status.success());
}
