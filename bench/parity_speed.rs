//! Reed–Solomon parity speed on one core, as `create --parity N` computes it (bench/volumes.sh):
//! `cargo run --release --example parity_speed [DATA_PARTS] [MIB]` prints MB/s of data encoded for
//! N = 1, 2 and 4 parity parts.

fn main() {
    let mut args = std::env::args().skip(1);
    let data: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(8);
    let mib: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2048);
    for parity in [1, 2, 4] {
        match airlock::volume::parity::measure(data, parity, mib) {
            Ok(rate) => println!("parity N={parity} k={data}\t{:.0} MB/s", rate / 1e6),
            Err(e) => eprintln!("parity N={parity}: {e}"),
        }
    }
}
