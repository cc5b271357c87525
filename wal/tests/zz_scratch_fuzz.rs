use std::path::Path;
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}
#[test]
fn scratch_fuzz() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/wal_reader");
    let seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    let iters: usize = std::env::var("ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20000);
    let mut rng = Rng(std::env::var("SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1));
    for it in 0..iters {
        let mut data = seeds[rng.below(seeds.len())].clone();
        for _ in 0..1 + rng.below(4) {
            if data.is_empty() {
                data.push(rng.next() as u8);
                continue;
            }
            match rng.below(6) {
                0 => {
                    let i = rng.below(data.len());
                    data[i] ^= 1 << rng.below(8);
                }
                1 => {
                    let i = rng.below(data.len());
                    data.truncate(i);
                }
                2 => {
                    let i = rng.below(data.len());
                    let n = rng.below(64);
                    let b = rng.next() as u8;
                    for k in i..(i + n).min(data.len()) {
                        data[k] = b;
                    }
                }
                3 => {
                    let i = rng.below(data.len());
                    let j = rng.below(data.len());
                    let n = rng.below(200).min(data.len() - i.max(j));
                    let chunk = data[i..i + n].to_vec();
                    data.splice(j..j, chunk);
                }
                4 => {
                    data[0] = rng.next() as u8;
                }
                _ => {
                    let i = rng.below(data.len());
                    let j = rng.below(data.len());
                    let (a, b) = (i.min(j), i.max(j));
                    data.drain(a..b);
                }
            }
        }
        let r = std::panic::catch_unwind(|| strata_wal::fuzzing::wal_reader(&data));
        if r.is_err() {
            std::fs::write(format!("/tmp/fuzzfail-{it}"), &data).unwrap();
            panic!("iteration {it} failed; input saved");
        }
    }
}
