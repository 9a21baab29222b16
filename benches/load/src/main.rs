//! Placeholder while the load tool is written.
fn main() {}
