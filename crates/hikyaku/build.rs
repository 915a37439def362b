// `sqlx::migrate!` embeds the migrations at compile time; a new file in the
// folder must rebuild the crate.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
    // The allocator of the binary, for measuring the others (main.rs).
    println!("cargo::rustc-check-cfg=cfg(hikyaku_allocator, values(\"system\", \"mimalloc\"))");
}
