//! Key events → characters, per keyboard, with the session's xkb keymap.
//!
//! libxkbcommon is loaded at run time (`xkbcommon-dl`): the static build used by the VM tests
//! cannot link it, and the privileged collector, which shares the binary, never needs it. When
//! it (or the configured layout) cannot be had, text is rebuilt with the built-in US table and
//! the fallback is logged once and shown in `imprint status`.

use super::keys::{self, Modifiers};
use serde::{Deserialize, Serialize};
use std::ffi::CString;
use std::os::raw::c_char;
use std::ptr;
use std::sync::{Arc, Mutex};
use xkbcommon_dl::{self as x, keysyms as ks};

/// The compose table used when `policy.compose_locale` is not set.
pub const DEFAULT_COMPOSE_LOCALE: &str = "en_US.UTF-8";
const SYSTEM_KEYBOARD: &str = "/etc/default/keyboard";
const XKB_SYMBOLS: &str = "/usr/share/X11/xkb/symbols";

/// An xkb keymap by its RMLVO names (`[policy] keymap = { layout = "de" }`); empty names take
/// xkb's defaults (rules `evdev`, model `pc105`).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(deny_unknown_fields, default)]
pub struct KeymapNames {
    pub layout: String,
    pub variant: String,
    pub model: String,
    pub options: String,
}

impl KeymapNames {
    /// The US layout.
    pub fn us() -> KeymapNames {
        KeymapNames {
            layout: "us".into(),
            ..Default::default()
        }
    }

    /// The system keyboard configuration (`/etc/default/keyboard`, as Debian writes it), else
    /// `us`.
    pub fn system() -> KeymapNames {
        std::fs::read_to_string(SYSTEM_KEYBOARD)
            .ok()
            .and_then(|t| KeymapNames::from_default_keyboard(&t))
            .unwrap_or_else(KeymapNames::us)
    }

    /// Parses the shell-variable format of `/etc/default/keyboard` (XKBLAYOUT, XKBVARIANT, …).
    pub fn from_default_keyboard(text: &str) -> Option<KeymapNames> {
        let mut k = KeymapNames::default();
        for line in text.lines() {
            let Some((name, value)) = line.trim().split_once('=') else {
                continue;
            };
            let value = value
                .trim()
                .trim_matches(|c| c == '"' || c == '\'')
                .to_owned();
            match name.trim() {
                "XKBLAYOUT" => k.layout = value,
                "XKBVARIANT" => k.variant = value,
                "XKBMODEL" => k.model = value,
                "XKBOPTIONS" => k.options = value,
                _ => {}
            }
        }
        (!k.layout.is_empty() && k.check().is_ok()).then_some(k)
    }

    /// Checks that every name is made of the characters xkb names use.
    pub fn check(&self) -> Result<(), String> {
        let ok = |s: &str| {
            s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-,.:+()".contains(c))
        };
        if self.layout.is_empty() {
            return Err("layout must be set (e.g. \"de\")".into());
        }
        for (key, v) in [
            ("layout", &self.layout),
            ("variant", &self.variant),
            ("model", &self.model),
            ("options", &self.options),
        ] {
            if !ok(v) {
                return Err(format!("{key} {v:?} is not an xkb name"));
            }
        }
        Ok(())
    }

    /// A short name, as `imprint status` shows it: `de`, `de(nodeadkeys)`.
    pub fn label(&self) -> String {
        if self.variant.is_empty() {
            self.layout.clone()
        } else {
            format!("{}({})", self.layout, self.variant)
        }
    }

    /// Without libxkbcommon, the layouts can still be looked for in xkb-data: `Ok` when they
    /// are there or when xkb-data is absent (nothing can be said).
    pub fn check_files(&self) -> Result<(), String> {
        let dir = std::path::Path::new(XKB_SYMBOLS);
        if !dir.is_dir() {
            return Ok(());
        }
        for l in self.layout.split(',').filter(|l| !l.is_empty()) {
            if !dir.join(l).is_file() {
                return Err(format!(
                    "layout `{l}` is not known to xkb ({XKB_SYMBOLS}/{l})"
                ));
            }
        }
        Ok(())
    }
}

/// Why an xkb keymap could not be used.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum XkbError {
    #[error("static builds do not load libxkbcommon")]
    Static,
    #[error("libxkbcommon.so.0 could not be loaded")]
    Unavailable,
    #[error("libxkbcommon could not create a context")]
    Context,
    #[error("xkb cannot compile keymap `{0}` (unknown layout, variant, model or options)")]
    Keymap(String),
    #[error("no xkb compose table for locale `{0}`")]
    Compose(String),
    #[error("{0}")]
    Name(String),
}

impl XkbError {
    /// True when the library, not the configuration, is what is missing.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, XkbError::Static | XkbError::Unavailable)
    }
}

/// A compiled keymap and compose table, shared by the keyboards that use it.
pub struct Keymap {
    lib: &'static x::XkbCommon,
    compose_lib: Option<&'static x::XkbCommonCompose>,
    ctx: *mut x::xkb_context,
    keymap: *mut x::xkb_keymap,
    compose: *mut x::xkb_compose_table,
    /// Indices of the Control, Alt (Mod1), Logo (Mod4) and Shift modifiers.
    mods: [u32; 4],
    /// libxkbcommon's reference counts are not atomic: states are made and freed under this.
    refs: Mutex<()>,
}

// SAFETY: after creation the keymap and compose table are immutable (libxkbcommon only reads
// them); the one thing that changes is their non-atomic reference count, and every call that
// changes it (state new/unref) holds `refs`. The context is only used by `compile`.
unsafe impl Send for Keymap {}
unsafe impl Sync for Keymap {}

impl Drop for Keymap {
    fn drop(&mut self) {
        // SAFETY: the pointers were returned by libxkbcommon and are released once, here; no
        // keyboard outlives the Arc that owns this.
        unsafe {
            if !self.compose.is_null() {
                if let Some(c) = self.compose_lib {
                    (c.xkb_compose_table_unref)(self.compose);
                }
            }
            (self.lib.xkb_keymap_unref)(self.keymap);
            (self.lib.xkb_context_unref)(self.ctx);
        }
    }
}

impl Keymap {
    /// Compiles `names`, with the compose table of `locale` (None: no dead keys or compose).
    pub fn compile(names: &KeymapNames, locale: Option<&str>) -> Result<Keymap, XkbError> {
        names.check().map_err(XkbError::Name)?;
        let lib = libxkbcommon()?;
        let cstr = |s: &str| CString::new(s).map_err(|_| XkbError::Name(format!("{s:?}")));
        let (layout, variant) = (cstr(&names.layout)?, cstr(&names.variant)?);
        let (model, options) = (cstr(&names.model)?, cstr(&names.options)?);
        let rules = cstr("evdev")?;
        let opt = |c: &CString, s: &str| {
            if s.is_empty() {
                ptr::null()
            } else {
                c.as_ptr()
            }
        };
        let rmlvo = x::xkb_rule_names {
            rules: rules.as_ptr(),
            model: opt(&model, &names.model),
            layout: layout.as_ptr(),
            variant: opt(&variant, &names.variant),
            options: opt(&options, &names.options),
        };
        // SAFETY: plain libxkbcommon calls with valid, NUL-terminated strings that outlive
        // them; every returned pointer is checked for null and owned by the Keymap after.
        unsafe {
            let ctx = (lib.xkb_context_new)(x::xkb_context_flags::XKB_CONTEXT_NO_ENVIRONMENT_NAMES);
            if ctx.is_null() {
                return Err(XkbError::Context);
            }
            // Its own errors say the same as ours, on stderr: only keep the critical ones.
            (lib.xkb_context_set_log_level)(ctx, x::xkb_log_level::XKB_LOG_LEVEL_CRITICAL);
            let keymap = (lib.xkb_keymap_new_from_names)(
                ctx,
                &rmlvo,
                x::xkb_keymap_compile_flags::XKB_KEYMAP_COMPILE_NO_FLAGS,
            );
            if keymap.is_null() {
                (lib.xkb_context_unref)(ctx);
                return Err(XkbError::Keymap(names.label()));
            }
            let mods = [
                x::XKB_MOD_NAME_CTRL,
                x::XKB_MOD_NAME_ALT,
                x::XKB_MOD_NAME_LOGO,
                x::XKB_MOD_NAME_SHIFT,
            ]
            .map(|n| (lib.xkb_keymap_mod_get_index)(keymap, n.as_ptr().cast::<c_char>()));
            let mut map = Keymap {
                lib,
                compose_lib: None,
                ctx,
                keymap,
                compose: ptr::null_mut(),
                mods,
                refs: Mutex::new(()),
            };
            if let Some(locale) = locale {
                let c =
                    libxkbcommon_compose().ok_or_else(|| XkbError::Compose(locale.to_owned()))?;
                let loc = cstr(locale)?;
                let table = (c.xkb_compose_table_new_from_locale)(
                    ctx,
                    loc.as_ptr(),
                    x::xkb_compose_compile_flags::XKB_COMPOSE_COMPILE_NO_FLAGS,
                );
                if table.is_null() {
                    return Err(XkbError::Compose(locale.to_owned()));
                }
                map.compose_lib = Some(c);
                map.compose = table;
            }
            Ok(map)
        }
    }

    /// True when dead keys and compose sequences are rebuilt.
    pub fn composes(&self) -> bool {
        !self.compose.is_null()
    }
}

// dlopen from a static glibc binary loads a second libc: static builds do without (and do
// not link dlopen at all).
#[cfg(target_feature = "crt-static")]
fn libxkbcommon() -> Result<&'static x::XkbCommon, XkbError> {
    Err(XkbError::Static)
}

#[cfg(not(target_feature = "crt-static"))]
fn libxkbcommon() -> Result<&'static x::XkbCommon, XkbError> {
    x::xkbcommon_option().ok_or(XkbError::Unavailable)
}

#[cfg(target_feature = "crt-static")]
fn libxkbcommon_compose() -> Option<&'static x::XkbCommonCompose> {
    None
}

#[cfg(not(target_feature = "crt-static"))]
fn libxkbcommon_compose() -> Option<&'static x::XkbCommonCompose> {
    x::xkbcommon_compose_option()
}

/// The layout typed text is rebuilt with.
#[derive(Clone)]
pub enum Layout {
    Xkb(Arc<Keymap>, String),
    /// The built-in US table (libxkbcommon or the configured layout could not be loaded).
    Us,
}

type CacheResult = Result<Arc<Keymap>, XkbError>;
type CacheEntry = ((KeymapNames, String), CacheResult);
/// Compiled keymaps (and failures, so each is warned about once) by names and locale.
static CACHE: Mutex<Vec<CacheEntry>> = Mutex::new(Vec::new());
const CACHE_MAX: usize = 8;

fn cache_put(cache: &mut Vec<CacheEntry>, key: (KeymapNames, String), r: CacheResult) {
    cache.retain(|(k, _)| *k != key);
    if cache.len() >= CACHE_MAX {
        cache.drain(..1);
    }
    cache.push((key, r));
}

impl Layout {
    /// The layout for `names` and compose `locale`, compiled once per process. On failure:
    /// the US table, with one warning, and the reason.
    pub fn load(names: &KeymapNames, locale: &str) -> (Layout, Option<XkbError>) {
        let key = (names.clone(), locale.to_owned());
        let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
        let found = cache
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, r)| r.clone());
        let r = match found {
            Some(r) => r,
            None => {
                let r = Keymap::compile(names, Some(locale))
                    .or_else(|e| match e {
                        XkbError::Compose(_) => {
                            tracing::warn!(
                                locale,
                                error = %e,
                                "dead keys and compose sequences are not rebuilt"
                            );
                            Keymap::compile(names, None)
                        }
                        e => Err(e),
                    })
                    .map(Arc::new);
                if let Err(e) = &r {
                    tracing::warn!(
                        layout = %names.label(),
                        model = %names.model,
                        options = %names.options,
                        error = %e,
                        fallback = "us",
                        "typed text is rebuilt with the built-in US layout"
                    );
                }
                cache_put(&mut cache, key, r.clone());
                r
            }
        };
        match r {
            Ok(m) => (Layout::Xkb(m, names.label()), None),
            Err(e) => (Layout::Us, Some(e)),
        }
    }

    /// Checks that `names` and `locale` compile (the policy check); `Ok` when libxkbcommon is
    /// missing and xkb-data has the layouts.
    pub fn check(names: &KeymapNames, locale: &str) -> Result<(), XkbError> {
        names.check().map_err(XkbError::Name)?;
        let key = (names.clone(), locale.to_owned());
        {
            let cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((_, Ok(_))) = cache.iter().find(|(k, _)| *k == key) {
                return Ok(());
            }
        }
        match Keymap::compile(names, Some(locale)) {
            Ok(m) => {
                let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
                cache_put(&mut cache, key, Ok(Arc::new(m)));
                Ok(())
            }
            Err(e) if e.is_unavailable() => names.check_files().map_err(XkbError::Name),
            Err(e) => Err(e),
        }
    }

    /// The name shown in `imprint status`.
    pub fn label(&self) -> String {
        match self {
            Layout::Xkb(_, l) => l.clone(),
            Layout::Us => "us (built-in)".into(),
        }
    }

    /// A new keyboard's state (nothing held, Num Lock on).
    pub fn keyboard(&self) -> Keyboard {
        match self {
            Layout::Xkb(m, _) => match XkbKeyboard::new(m.clone()) {
                Some(k) => Keyboard::Xkb(k),
                None => Keyboard::Us(Modifiers::default()),
            },
            Layout::Us => Keyboard::Us(Modifiers::default()),
        }
    }
}

/// What one key event does to the text being typed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Typed {
    /// Nothing: releases, modifiers, shortcuts, a cancelled compose sequence.
    Nothing,
    Char(char),
    /// A dead key or part of a compose sequence: its char comes with a later key.
    Composing,
    Newline,
    Tab,
    Backspace,
    Delete,
    Left,
    Right,
    /// The cursor went somewhere unknown (navigation, selection, function keys).
    Moved,
    /// A paste shortcut.
    Paste,
}

/// One keyboard's state: modifiers, locks, and a pending dead key or compose sequence.
pub enum Keyboard {
    Xkb(XkbKeyboard),
    Us(Modifiers),
}

impl Keyboard {
    /// Follows one key event (value 1 press, 0 release, 2 repeat) and says what it typed.
    pub fn key(&mut self, code: u16, value: i32) -> Typed {
        match self {
            Keyboard::Xkb(k) => k.key(code, value),
            Keyboard::Us(m) => us_key(m, code, value),
        }
    }

    /// Follows a key event whose text is not rebuilt (another level): modifiers and locks only.
    pub fn track(&mut self, code: u16, value: i32) {
        match self {
            Keyboard::Xkb(k) => k.track(code, value),
            Keyboard::Us(m) => m.update(code, value),
        }
    }
}

fn us_key(m: &mut Modifiers, code: u16, value: i32) -> Typed {
    m.update(code, value);
    if value == 0 || keys::is_modifier(code) {
        return Typed::Nothing;
    }
    if (m.ctrl > 0 && code == keys::KEY_V)
        || (m.shift > 0 && m.ctrl == 0 && code == keys::KEY_INSERT)
    {
        return Typed::Paste;
    }
    match code {
        keys::KEY_BACKSPACE => return Typed::Backspace,
        keys::KEY_ENTER | keys::KEY_KPENTER => return Typed::Newline,
        keys::KEY_TAB => return Typed::Tab,
        _ => {}
    }
    if m.shortcut() || m.altgr {
        // AltGr: this table has no third level.
        return if keys::is_printable_key(code) && m.shortcut() {
            Typed::Nothing
        } else {
            Typed::Moved
        };
    }
    match code {
        keys::KEY_LEFT if m.shift == 0 => Typed::Left,
        keys::KEY_RIGHT if m.shift == 0 => Typed::Right,
        keys::KEY_DELETE => Typed::Delete,
        _ => keys::us_char(code, m).map_or(Typed::Moved, Typed::Char),
    }
}

/// A keyboard's xkb state and compose state.
pub struct XkbKeyboard {
    map: Arc<Keymap>,
    state: *mut x::xkb_state,
    compose: *mut x::xkb_compose_state,
}

// SAFETY: the states are owned by this value alone (never shared), and the keymap they point
// to is shared only as described at `Keymap`.
unsafe impl Send for XkbKeyboard {}

impl Drop for XkbKeyboard {
    fn drop(&mut self) {
        let _refs = self.map.refs.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: owned pointers, released once; `refs` serialises the keymap's refcount.
        unsafe {
            if let (false, Some(c)) = (self.compose.is_null(), self.map.compose_lib) {
                (c.xkb_compose_state_unref)(self.compose);
            }
            (self.map.lib.xkb_state_unref)(self.state);
        }
    }
}

fn is_modifier_sym(sym: u32) -> bool {
    // Shift_L … Hyper_R, the ISO level and group shifts and locks, Mode_switch, Num_Lock.
    (ks::Shift_L..=ks::Hyper_R).contains(&sym)
        || (ks::ISO_Lock..=ks::ISO_Last_Group_Lock).contains(&sym)
        || sym == ks::Mode_switch
        || sym == ks::Num_Lock
}

impl XkbKeyboard {
    fn new(map: Arc<Keymap>) -> Option<XkbKeyboard> {
        let _refs = map.refs.lock().unwrap_or_else(|e| e.into_inner());
        let lib = map.lib;
        // SAFETY: the keymap and table are alive (held by `map`); results are checked.
        unsafe {
            let state = (lib.xkb_state_new)(map.keymap);
            if state.is_null() {
                return None;
            }
            // Num Lock's state before we saw any key is unknown; digits are the safer guess
            // for redaction (a card number typed on the keypad).
            let num = (lib.xkb_keymap_mod_get_index)(
                map.keymap,
                x::XKB_MOD_NAME_NUM.as_ptr().cast::<c_char>(),
            );
            if num < 32 {
                (lib.xkb_state_update_mask)(state, 0, 0, 1 << num, 0, 0, 0);
            }
            let compose = match (map.compose.is_null(), map.compose_lib) {
                (false, Some(c)) => (c.xkb_compose_state_new)(
                    map.compose,
                    x::xkb_compose_state_flags::XKB_COMPOSE_STATE_NO_FLAGS,
                ),
                _ => ptr::null_mut(),
            };
            drop(_refs);
            Some(XkbKeyboard {
                map,
                state,
                compose,
            })
        }
    }

    /// Whether modifier `i` of [`Keymap::mods`] is in effect.
    fn mod_active(&self, i: usize) -> bool {
        let idx = self.map.mods[i];
        // SAFETY: the state is ours and alive; an invalid index just reads as inactive.
        idx != x::XKB_MOD_INVALID
            && unsafe {
                (self.map.lib.xkb_state_mod_index_is_active)(
                    self.state,
                    idx,
                    x::xkb_state_component::XKB_STATE_MODS_EFFECTIVE,
                )
            } > 0
    }

    fn update(&mut self, kc: u32, value: i32) {
        let dir = match value {
            0 => x::xkb_key_direction::XKB_KEY_UP,
            1 => x::xkb_key_direction::XKB_KEY_DOWN,
            _ => return,
        };
        // SAFETY: the state is ours and alive.
        unsafe {
            (self.map.lib.xkb_state_update_key)(self.state, kc, dir);
        }
    }

    fn reset_compose(&mut self) {
        if let (false, Some(c)) = (self.compose.is_null(), self.map.compose_lib) {
            // SAFETY: the compose state is ours and alive.
            unsafe { (c.xkb_compose_state_reset)(self.compose) }
        }
    }

    fn track(&mut self, code: u16, value: i32) {
        self.reset_compose();
        self.update(u32::from(code) + 8, value);
    }

    fn key(&mut self, code: u16, value: i32) -> Typed {
        // evdev code + 8 is the xkb keycode (the evdev rules' keycodes).
        let kc = u32::from(code) + 8;
        let lib = self.map.lib;
        if value == 0 {
            self.update(kc, value);
            return Typed::Nothing;
        }
        // SAFETY (this block and below): the state and keymap are alive; buffers are sized.
        if value != 1 && unsafe { (lib.xkb_keymap_key_repeats)(self.map.keymap, kc) } == 0 {
            return Typed::Nothing;
        }
        // What a press types depends on the state before it (as libxkbcommon's tools do).
        let sym = unsafe { (lib.xkb_state_key_get_one_sym)(self.state, kc) };
        let typed = self.classify(code, kc, sym);
        self.update(kc, value);
        typed
    }

    fn classify(&mut self, code: u16, kc: u32, sym: u32) -> Typed {
        if sym == ks::NoSymbol || is_modifier_sym(sym) {
            return Typed::Nothing;
        }
        let [ctrl, alt, logo, shift] = [0, 1, 2, 3].map(|i| self.mod_active(i));
        let latin = |s: u32| (0x20..0x7f).contains(&s);
        let v_key = sym == ks::v || sym == ks::V || (code == keys::KEY_V && !latin(sym));
        if (ctrl && !alt && v_key)
            || (shift && !ctrl && (sym == ks::Insert || sym == ks::KP_Insert))
        {
            self.reset_compose();
            return Typed::Paste;
        }
        match sym {
            ks::BackSpace => return self.edit(Typed::Backspace),
            ks::Return | ks::KP_Enter => return self.edit(Typed::Newline),
            ks::Tab | ks::ISO_Left_Tab => return self.edit(Typed::Tab),
            _ => {}
        }
        if ctrl || alt || logo {
            self.reset_compose();
            // (The key's text would be a control char: its keysym says whether it prints.)
            // SAFETY: a pure function of its argument.
            let prints = char::from_u32(unsafe { (self.map.lib.xkb_keysym_to_utf32)(sym) })
                .is_some_and(|c| c != '\0' && !c.is_control());
            return if prints { Typed::Nothing } else { Typed::Moved };
        }
        if let Some(t) = self.feed(sym) {
            return t;
        }
        match sym {
            ks::Left | ks::KP_Left if !shift => Typed::Left,
            ks::Right | ks::KP_Right if !shift => Typed::Right,
            ks::Delete | ks::KP_Delete => Typed::Delete,
            _ => self.utf8(kc).map_or(Typed::Moved, Typed::Char),
        }
    }

    fn edit(&mut self, t: Typed) -> Typed {
        self.reset_compose();
        t
    }

    /// The printable char the key types in the current state.
    fn utf8(&self, kc: u32) -> Option<char> {
        let mut buf = [0u8; 32];
        // SAFETY: the buffer's size is passed; libxkbcommon NUL-terminates within it.
        let n = unsafe {
            (self.map.lib.xkb_state_key_get_utf8)(
                self.state,
                kc,
                buf.as_mut_ptr().cast::<c_char>(),
                buf.len(),
            )
        };
        first_printable(&buf, n)
    }

    /// Feeds a keysym to the compose state: None when it is not part of a sequence.
    fn feed(&mut self, sym: u32) -> Option<Typed> {
        let c = self.map.compose_lib.filter(|_| !self.compose.is_null())?;
        // SAFETY: the compose state is ours and alive; the buffer's size is passed.
        unsafe {
            let fed = (c.xkb_compose_state_feed)(self.compose, sym);
            if fed == x::xkb_compose_feed_result::XKB_COMPOSE_FEED_IGNORED {
                return None;
            }
            match (c.xkb_compose_state_get_status)(self.compose) {
                x::xkb_compose_status::XKB_COMPOSE_COMPOSING => Some(Typed::Composing),
                x::xkb_compose_status::XKB_COMPOSE_COMPOSED => {
                    let mut buf = [0u8; 64];
                    let n = (c.xkb_compose_state_get_utf8)(
                        self.compose,
                        buf.as_mut_ptr().cast::<c_char>(),
                        buf.len(),
                    );
                    (c.xkb_compose_state_reset)(self.compose);
                    // (A sequence yielding several chars keeps its first: they are rare.)
                    Some(first_printable(&buf, n).map_or(Typed::Moved, Typed::Char))
                }
                x::xkb_compose_status::XKB_COMPOSE_CANCELLED => {
                    // As toolkits do, a cancelled sequence types nothing.
                    (c.xkb_compose_state_reset)(self.compose);
                    Some(Typed::Nothing)
                }
                x::xkb_compose_status::XKB_COMPOSE_NOTHING => None,
            }
        }
    }
}

fn first_printable(buf: &[u8], n: i32) -> Option<char> {
    let n = usize::try_from(n).ok()?.min(buf.len());
    let c = std::str::from_utf8(&buf[..n]).ok()?.chars().next()?;
    (!c.is_control()).then_some(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHIFT: u16 = keys::KEY_LEFTSHIFT;
    const ALTGR: u16 = keys::KEY_RIGHTALT;

    fn layout(l: &str, variant: &str) -> Layout {
        let names = KeymapNames {
            layout: l.into(),
            variant: variant.into(),
            ..Default::default()
        };
        match Layout::load(&names, DEFAULT_COMPOSE_LOCALE) {
            // libxkbcommon0, xkb-data and libx11-data are test dependencies (tests/setup.sh):
            // without them this must fail, not pass on the US table.
            (Layout::Us, e) => panic!("layout {l} not loaded: {e:?}"),
            (l, _) => l,
        }
    }

    /// Types `keys` (code, with these modifiers held) and returns the chars produced.
    fn typed(l: &Layout, keys: &[(&[u16], u16)]) -> String {
        let mut k = l.keyboard();
        let mut s = String::new();
        for (mods, code) in keys {
            for m in *mods {
                k.key(*m, 1);
            }
            if let Typed::Char(c) = k.key(*code, 1) {
                s.push(c);
            }
            k.key(*code, 0);
            for m in mods.iter().rev() {
                k.key(*m, 0);
            }
        }
        s
    }

    const Q: u16 = 16;
    const E: u16 = 18;
    const Y: u16 = 21;
    const A: u16 = 30;
    const Z: u16 = 44;
    const M: u16 = 50;

    #[test]
    fn german_layout() {
        let de = layout("de", "");
        let none: &[u16] = &[];
        // z and y swapped; ß on the minus key, ü on the left bracket, ö ä.
        assert_eq!(
            typed(
                &de,
                &[
                    (none, Y),
                    (none, Z),
                    (none, 12),
                    (none, 26),
                    (none, 39),
                    (none, 40)
                ]
            ),
            "zyßüöä"
        );
        assert_eq!(typed(&de, &[(&[SHIFT], 26), (&[SHIFT], 3)]), "Ü\"");
        // AltGr: q → @, e → €.
        assert_eq!(typed(&de, &[(&[ALTGR], Q), (&[ALTGR], E)]), "@€");
        // Dead circumflex (the key left of 1) then e.
        assert_eq!(typed(&de, &[(none, 41), (none, E)]), "ê");
        // Dead acute (the key left of backspace) then a.
        assert_eq!(typed(&de, &[(none, 13), (none, A)]), "á");
        // Caps Lock.
        assert_eq!(
            typed(&de, &[(none, keys::KEY_CAPSLOCK), (none, Z), (none, 26)]),
            "YÜ"
        );
    }

    #[test]
    fn french_layout() {
        let fr = layout("fr", "");
        let none: &[u16] = &[];
        // AZERTY: a and q swapped, m beside l (the semicolon key).
        assert_eq!(
            typed(&fr, &[(none, Q), (none, A), (none, 39), (none, M)]),
            "aqm,"
        );
        // The digits row: unshifted symbols, shifted digits.
        assert_eq!(typed(&fr, &[(none, 2), (none, 3), (none, 11)]), "&éà");
        assert_eq!(typed(&fr, &[(&[SHIFT], 2), (&[SHIFT], 11)]), "10");
        // AltGr+à (the 0 key) → @.
        assert_eq!(typed(&fr, &[(&[ALTGR], 11)]), "@");
        // Dead circumflex (right of p) then e.
        assert_eq!(typed(&fr, &[(none, 26), (none, E)]), "ê");
    }

    #[test]
    fn editing_shortcuts_and_paste() {
        let us = layout("us", "");
        let mut k = us.keyboard();
        assert_eq!(k.key(keys::KEY_BACKSPACE, 1), Typed::Backspace);
        assert_eq!(k.key(keys::KEY_ENTER, 1), Typed::Newline);
        assert_eq!(k.key(keys::KEY_LEFT, 1), Typed::Left);
        assert_eq!(k.key(keys::KEY_DELETE, 1), Typed::Delete);
        assert_eq!(k.key(102, 1), Typed::Moved, "Home");
        k.key(keys::KEY_LEFTCTRL, 1);
        assert_eq!(k.key(46, 1), Typed::Nothing, "Ctrl+C");
        assert_eq!(k.key(keys::KEY_V, 1), Typed::Paste);
        k.key(keys::KEY_LEFTCTRL, 0);
        assert_eq!(k.key(A, 1), Typed::Char('a'));
        assert_eq!(k.key(A, 2), Typed::Char('a'), "repeat");
        assert_eq!(k.key(A, 0), Typed::Nothing);
        // Num Lock is taken to be on: the keypad types digits.
        assert_eq!(k.key(79, 1), Typed::Char('1'));
        // Right Alt is Alt on us: a shortcut.
        k.key(ALTGR, 1);
        assert_eq!(k.key(Q, 1), Typed::Nothing);
    }

    #[test]
    fn unknown_layouts_fall_back_and_fail_the_check() {
        let names = KeymapNames {
            layout: "qq".into(),
            ..Default::default()
        };
        let (l, e) = Layout::load(&names, DEFAULT_COMPOSE_LOCALE);
        assert!(matches!(l, Layout::Us));
        assert_eq!(e, Some(XkbError::Keymap("qq".into())));
        assert!(Layout::check(&names, DEFAULT_COMPOSE_LOCALE).is_err());
        let bad = KeymapNames {
            layout: "de;rm".into(),
            ..Default::default()
        };
        assert!(matches!(
            Layout::check(&bad, DEFAULT_COMPOSE_LOCALE),
            Err(XkbError::Name(_))
        ));
        assert!(Layout::check(&KeymapNames::us(), "xx_NOWHERE").is_err());
    }

    #[test]
    fn system_keyboard_file() {
        let k = KeymapNames::from_default_keyboard(
            "# KEYBOARD CONFIGURATION FILE\nXKBMODEL=\"pc105\"\nXKBLAYOUT=\"fr\"\nXKBVARIANT=\"\"\nXKBOPTIONS=\"compose:ralt\"\n\nBACKSPACE=\"guess\"\n",
        );
        assert_eq!(
            k,
            Some(KeymapNames {
                layout: "fr".into(),
                variant: String::new(),
                model: "pc105".into(),
                options: "compose:ralt".into(),
            })
        );
        assert_eq!(KeymapNames::from_default_keyboard("XKBMODEL=pc105\n"), None);
    }

    #[test]
    fn us_table_fallback() {
        let mut k = Layout::Us.keyboard();
        k.key(SHIFT, 1);
        assert_eq!(k.key(3, 1), Typed::Char('@'));
        k.key(SHIFT, 0);
        k.key(ALTGR, 1);
        assert_eq!(k.key(Q, 1), Typed::Moved);
    }
}
