fn main() {
    let path = std::env::args().nth(1).unwrap();
    let src = std::fs::read_to_string(&path).unwrap();
    match weft_topo::parse(&src) {
        Ok(p) => println!("ok, {} warnings", p.warnings.len()),
        Err(e) => {
            for d in e.0 {
                println!("{:?}: {} | help: {:?}", d.line_col(&src), d.message, d.help);
            }
        }
    }
}
