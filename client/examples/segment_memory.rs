//! What a default segment costs in memory with C coordinators recorded by W writer threads:
//! the bytes its file really has allocated (as `du` counts them), beside its length.
//!
//! ```sh
//! cargo run --release -p coordmetrics --example segment_memory -- 13x8 256x32 256x128
//! ```
//! Each case creates a segment with the default capacities (256 coordinators, 128 writers) in a
//! temporary directory under `$TMPDIR` (use a tmpfs to measure what `/dev/shm` would hold).

use std::os::unix::fs::MetadataExt;
use std::sync::Barrier;
use std::time::Duration;

fn main() {
    for case in std::env::args().skip(1) {
        let Some((coordinators, writers)) =
            case.split_once('x').and_then(|(c, w)| Some((c.parse::<u32>().ok()?, w.parse::<u32>().ok()?)))
        else {
            eprintln!("usage: segment_memory CxW ... (e.g. 13x8)");
            std::process::exit(2);
        };
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("segment");
        let collector = coordmetrics::Collector::open(&path).expect("segment");
        let names: Vec<String> = (0..coordinators).map(|i| format!("Coordinator{i:03}")).collect();
        // Every writer holds its slot until all have recorded: W slots in use at once.
        let together = Barrier::new(writers as usize);
        std::thread::scope(|scope| {
            for _ in 0..writers {
                scope.spawn(|| {
                    for name in &names {
                        collector.coordinator(name).record(Duration::from_millis(1), true);
                    }
                    together.wait();
                });
            }
        });
        let metadata = std::fs::metadata(&path).expect("segment file");
        let allocated = metadata.blocks() * 512;
        println!(
            "{coordinators}x{writers}: {:.2} MiB allocated ({allocated} bytes), file {:.1} MiB long",
            allocated as f64 / 1048576.0,
            metadata.len() as f64 / 1048576.0
        );
    }
}
