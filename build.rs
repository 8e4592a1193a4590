//! Build script: rebuild when a migration file is added or removed. `refinery::embed_migrations!`
//! only tracks the files it found, not the `migrations/` directory itself.
#![allow(
    clippy::print_stdout,
    reason = "cargo reads build script directives from stdout"
)]

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
