//! A standalone Aeron media driver (the C driver, embedded in this
//! program), for running `aeron_fanout`'s roles across hosts: one per host,
//! every process on that host pointing at its directory.
//!
//! ```text
//! cargo run --release --manifest-path aeron/Cargo.toml --example media_driver -- /dev/shm/aeron-tickring
//! ```
//!
//! It runs until killed (Ctrl-C).

use rusteron_media_driver::{AeronDriver, AeronDriverContext, IntoCString};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/dev/shm/aeron-tickring".to_owned());
    let context = AeronDriverContext::new()?;
    context.set_dir(&dir.clone().into_c_string())?;
    context.set_dir_delete_on_start(true)?;
    context.set_dir_delete_on_shutdown(true)?;
    let driver = AeronDriver::new(&context)?;
    driver.start(true)?; // the conductor's duty cycle runs on this thread
    println!("media driver running in {dir}");
    loop {
        driver.main_idle_strategy(driver.main_do_work()?);
    }
}
