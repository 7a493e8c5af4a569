// `sqlx::migrate!` embeds the migrations at compile time; without this, adding a migration
// file leaves every binary built before it running the old set until some Rust file changes.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
