//! Rebuilds the engine when a PostgreSQL migration is added or changed: refinery embeds
//! `migrations/*.sql` at compile time.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
