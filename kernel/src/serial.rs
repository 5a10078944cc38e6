//! The COM1 console (16550 UART at 0x3F8) and the `log` logger on top of it.
//!
//! Output is polled (no interrupts). One spin lock serialises writers; the panic and exception
//! paths use [`force_write`], which does not wait for the lock (the lock holder may be the code
//! that faulted).

use core::fmt::{self, Write};

use spin::Mutex;

use crate::io::{inb, outb};

const COM1: u16 = 0x3F8;

struct Uart;

impl Uart {
    fn init() {
        outb(COM1 + 1, 0x00); // no interrupts
        outb(COM1 + 3, 0x80); // DLAB
        outb(COM1, 0x01); // 115200 baud
        outb(COM1 + 1, 0x00);
        outb(COM1 + 3, 0x03); // 8N1
        outb(COM1 + 2, 0xC7); // FIFO on, cleared
        outb(COM1 + 4, 0x03); // DTR | RTS
    }

    fn put(byte: u8) {
        while inb(COM1 + 5) & 0x20 == 0 {
            core::hint::spin_loop();
        }
        outb(COM1, byte);
    }
}

impl Write for Uart {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                Uart::put(b'\r');
            }
            Uart::put(b);
        }
        Ok(())
    }
}

static LOCK: Mutex<()> = Mutex::new(());

/// Initialises COM1 and installs the logger.
pub fn init() {
    Uart::init();
    log::set_logger(&LOGGER).ok();
    log::set_max_level(log::LevelFilter::Info);
}

/// Writes formatted text to the console.
pub fn write_fmt(args: fmt::Arguments<'_>) {
    let _g = LOCK.lock();
    let _ = Uart.write_fmt(args);
}

/// Writes without taking the console lock: for the panic and exception paths only.
pub fn force_write(args: fmt::Arguments<'_>) {
    let _ = Uart.write_fmt(args);
}

/// A `core::fmt::Write` sink for the console (takes the lock per call).
pub struct Console;

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        write_fmt(format_args!("{s}"));
        Ok(())
    }
}

/// `print!` to the console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::serial::write_fmt(format_args!($($arg)*)) };
}

/// `println!` to the console.
#[macro_export]
macro_rules! println {
    () => { $crate::print!("\n") };
    ($($arg:tt)*) => { $crate::serial::write_fmt(format_args!("{}\n", format_args!($($arg)*))) };
}

struct Logger;

static LOGGER: Logger = Logger;

impl log::Log for Logger {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            write_fmt(format_args!("[{:5}] {}: {}\n", r.level(), r.target(), r.args()));
        }
    }

    fn flush(&self) {}
}
