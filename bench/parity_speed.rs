//! Reed–Solomon parity speed on one core, as `create --parity N` computes it (bench/volumes.sh):
//! `cargo run --release --example parity_speed [DATA_PARTS] [MIB]` prints, for N = 1, 2 and 4
//! parity parts, the data encoded per second of this thread's CPU time (so a busy machine does
//! not lower the figure) and per second of wall time.

/// This thread's user + system CPU time in seconds (`/proc/thread-self/stat`, clock ticks of
/// 1/100 s on Linux).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("/proc/thread-self/stat");
    let fields: Vec<&str> = stat[stat.rfind(')').expect("comm") + 2..].split(' ').collect();
    let ticks = |i: usize| fields[i].parse::<f64>().expect("a clock tick count");
    (ticks(11) + ticks(12)) / 100.0
}

fn main() {
    let mut args = std::env::args().skip(1);
    let data: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(8);
    let mib: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(4096);
    for parity in [1, 2, 4] {
        let (cpu, wall) = (cpu_seconds(), std::time::Instant::now());
        match airlock::volume::parity::encode_for_bench(data, parity, mib) {
            Ok(bytes) => {
                let mb = bytes as f64 / 1e6;
                let (cpu, wall) = (cpu_seconds() - cpu, wall.elapsed().as_secs_f64());
                println!("parity N={parity} k={data}\t{:.0} MB per CPU-second\t{:.0} MB/s wall", mb / cpu, mb / wall);
            }
            Err(e) => eprintln!("parity N={parity}: {e}"),
        }
    }
}
