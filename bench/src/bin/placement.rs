//! Automatic placement on synthetic topologies: links cut, balance and time
//! of weft's partition against a naive round-robin split. Pure CPU, no
//! root. `cargo run --release -p weft-bench --bin placement [-- K...]`
//! (machine counts; default 4 16 50). The figures are in
//! docs/performance.md.

use std::time::Instant;

use weft_topo::placement::{self, synthetic, Graph};

fn main() {
    let ks: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("machine counts are numbers"))
        .collect();
    let ks = if ks.is_empty() { vec![4, 16, 50] } else { ks };
    let inputs: Vec<(&str, Graph)> = vec![
        ("fat-tree k=16", synthetic::fat_tree(16)),
        ("fat-tree k=34", synthetic::fat_tree(34)),
        ("random 4-regular", synthetic::random_regular(1000, 4, 1)),
        ("random 4-regular", synthetic::random_regular(10_000, 4, 1)),
        ("ring of stars 20x49", synthetic::ring_of_stars(20, 49)),
        ("ring of stars 200x49", synthetic::ring_of_stars(200, 49)),
    ];
    println!("| topology | nodes | links | machines | cut: weft | cut: round-robin | heaviest/mean: weft | round-robin | passes | time (ms) |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (name, g) in &inputs {
        let links = placement::cut(g, &(0..g.len()).collect::<Vec<_>>());
        for &k in &ks {
            // Best of three, on a loaded machine.
            let mut best = f64::MAX;
            let mut p = None;
            for _ in 0..3 {
                let t = Instant::now();
                let r = placement::partition(g, k);
                best = best.min(t.elapsed().as_secs_f64() * 1e3);
                p = Some(r);
            }
            let p = p.unwrap();
            let rr = placement::round_robin(g.len(), k);
            println!(
                "| {name} | {} | {links} | {k} | {} | {} | {:.3} | {:.3} | {} | {best:.1} |",
                g.len(),
                placement::cut(g, &p.part),
                placement::cut(g, &rr),
                placement::imbalance(g, &p.part, k),
                placement::imbalance(g, &rr, k),
                p.passes,
            );
        }
    }
}
