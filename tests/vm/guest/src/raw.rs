//! A uinput keyboard made with raw ioctls, for what the `evdev` crate's builder cannot set:
//! `EV_REP`, which makes the kernel autorepeat a held key (value 2 events that the device itself
//! never sends).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use evdev::KeyCode;

use crate::devices::{find_node_by_name, Sent};

const EV_SYN: u16 = 0;
const EV_KEY: u16 = 1;
const EV_REP: u16 = 0x14;

#[repr(C)]
struct UinputSetup {
    bustype: u16,
    vendor: u16,
    product: u16,
    version: u16,
    name: [u8; 80],
    ff_effects_max: u32,
}

nix::ioctl_write_int!(ui_set_evbit, b'U', 100);
nix::ioctl_write_int!(ui_set_keybit, b'U', 101);
nix::ioctl_write_ptr!(ui_dev_setup, b'U', 3, UinputSetup);
nix::ioctl_none!(ui_dev_create, b'U', 1);
nix::ioctl_none!(ui_dev_destroy, b'U', 2);

/// A keyboard with kernel autorepeat (the kernel's defaults: 250 ms delay, 33 ms period).
pub struct RepeatKeyboard {
    file: File,
    pub name: String,
    pub node: PathBuf,
    pub step: Duration,
    pub sent: Vec<Sent>,
}

impl RepeatKeyboard {
    pub fn create(name: &str, product: u16, step: Duration) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/uinput")
            .context("opening /dev/uinput (is uinput.ko loaded?)")?;
        let fd = file.as_raw_fd();
        let mut setup = UinputSetup {
            bustype: 0x06, // BUS_VIRTUAL
            vendor: 0x1209,
            product,
            version: 1,
            name: [0; 80],
            ff_effects_max: 0,
        };
        let n = name.len().min(79);
        setup.name[..n].copy_from_slice(&name.as_bytes()[..n]);
        // SAFETY: uinput ioctls on our own fd with valid arguments.
        unsafe {
            ui_set_evbit(fd, EV_KEY.into()).context("UI_SET_EVBIT EV_KEY")?;
            ui_set_evbit(fd, EV_REP.into()).context("UI_SET_EVBIT EV_REP")?;
            for key in KeyCode::KEY_ESC.code()..=KeyCode::KEY_MICMUTE.code() {
                ui_set_keybit(fd, key.into()).context("UI_SET_KEYBIT")?;
            }
            ui_dev_setup(fd, &setup).context("UI_DEV_SETUP")?;
            ui_dev_create(fd).context("UI_DEV_CREATE")?;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let node = loop {
            if let Ok(node) = find_node_by_name(name) {
                if node.exists() {
                    break node;
                }
            }
            if Instant::now() > deadline {
                bail!("no event node for {name} within 10 s");
            }
            sleep(Duration::from_millis(10));
        };
        Ok(RepeatKeyboard {
            file,
            name: name.to_owned(),
            node,
            step,
            sent: Vec::new(),
        })
    }

    fn write(&mut self, kind: u16, code: u16, value: i32) -> Result<()> {
        let mut buf = [0u8; 24];
        buf[16..18].copy_from_slice(&kind.to_ne_bytes());
        buf[18..20].copy_from_slice(&code.to_ne_bytes());
        buf[20..24].copy_from_slice(&value.to_ne_bytes());
        self.file.write_all(&buf).context("writing to uinput")
    }

    /// One key report (the key event, then SYN_REPORT), then `step`.
    pub fn key(&mut self, key: KeyCode, value: i32) -> Result<()> {
        self.write(EV_KEY, key.code(), value)?;
        self.write(EV_SYN, 0, 0)?;
        self.sent.push(Sent {
            kind: EV_KEY,
            code: key.code(),
            value,
        });
        sleep(self.step);
        Ok(())
    }

    pub fn tap(&mut self, key: KeyCode) -> Result<()> {
        self.key(key, 1)?;
        self.key(key, 0)
    }
}

impl Drop for RepeatKeyboard {
    fn drop(&mut self) {
        // SAFETY: our own uinput fd.
        let _ = unsafe { ui_dev_destroy(self.file.as_raw_fd()) };
    }
}
