# imprint's one definition of a record, on the collector→agent ring and in spool segments.
#
# Evolution rules: fields and enumerants are only ever appended (never renumbered, never
# removed), so every older spool stays readable. `Batch.formatVersion` is bumped when the
# meaning of an existing field changes.
@0x8a1342b204438023;

# One input event, as the kernel delivered it.
struct InputEvent {
  monoNs @0 :UInt64;     # CLOCK_MONOTONIC timestamp in nanoseconds
  device @1 :UInt32;     # Device.index
  type @2 :UInt16;       # EV_* type
  code @3 :UInt16;       # KEY_*, REL_*, ABS_*, ... code
  value @4 :Int32;
  focus @5 :UInt64;      # Focus.seq in force when the event happened (0: unknown)
}

# An input device, as the collector's device table knows it.
struct Device {
  index @0 :UInt32;      # stable within one collector run; referenced by InputEvent.device
  name @1 :Text;
  bus @2 :UInt16;
  vendor @3 :UInt16;
  product @4 :UInt16;
  version @5 :UInt16;
  phys @6 :Text;
  virtual @7 :Bool;      # uinput or otherwise injected: not a physical device
  node @8 :Text;         # /dev/input/eventN, or the recorded node for replay
  removed @9 :Bool;      # the device went away; its index is not reused in this run
  monoNs @10 :UInt64;    # when the collector saw it appear (or disappear)
  source @11 :Source;
}

# Where the events came from.
enum Source {
  unknown @0;
  evdev @1;
  ebpf @2;
  replay @3;
}

# The pipeline stage at which events were lost.
enum Stage {
  unknown @0;
  bpfReserve @1;       # BPF ring buffer reserve failed
  ringFull @2;         # collector→agent ring had no room
  evdevSynDropped @3;  # the kernel's evdev buffer overflowed (SYN_DROPPED)
  policy @4;           # dropped by policy (out of scope)
  disk @5;             # the spool could not be written (disk full, I/O error)
  ringCorrupt @6;      # a ring frame failed validation
  spoolCorrupt @7;     # a spool frame failed validation when read back
  spoolTorn @8;        # a torn tail was truncated during recovery
  paused @9;           # the person recording paused capture (imprint status --pause)
  retention @10;       # the disk budget forced deleting a segment that was not yet shipped
  collectorCrash @11;  # the collector died without closing its ring: what it held in memory, and
                       # input until its restart, was not captured (count 0: unknowable)
  ringReplaced @12;    # a ring was replaced before the agent had read all of it (count: frames)
}

# A counted loss: never silence.
struct Gap {
  fromNs @0 :UInt64;
  toNs @1 :UInt64;
  stage @2 :Stage;
  count @3 :UInt64;    # events (or frames, for the ring stages) lost
  device @4 :UInt32;   # the device concerned, or 0xFFFFFFFF for none/all
}

# The application that had focus. Filled by focus tracking; fields may be empty.
struct Focus {
  seq @0 :UInt64;
  monoNs @1 :UInt64;
  pid @2 :UInt32;
  startTime @3 :UInt64;  # process start time (clock ticks since boot), so a reused pid is not confused
  exe @4 :Text;
  appId @5 :Text;        # desktop, flatpak or snap app id
  unit @6 :Text;         # systemd unit
  cgroup @7 :Text;
  uid @8 :UInt32;
  session @9 :Text;
  title @10 :Text;       # only when titles are enabled by configuration
  wmClass @11 :Text;
  pidVerified @12 :Bool; # pid came from the display server, not from a client's own claim
  tracker @13 :Text;     # which tracker reported it: x11, sway, hyprland, gnome, kde, tty, ...
  unknown @14 :Bool;     # focus is not known (tracker lost, compositor restarting)
  terminalPid @15 :UInt32;  # when the focused window is a terminal: the terminal emulator
  terminalExe @16 :Text;    # (pid/exe above are then the pty's foreground program)
  cmdline @17 :Text;     # only when enabled by configuration: it can hold secrets
  seat @18 :Text;
  tty @19 :TtyMode;      # for a terminal program: how its terminal reads input right now
  locked @20 :Bool;      # the session is locked (a lock screen is up, logind LockedHint)
  lockedBy @21 :Text;    # what says so: "x11:i3lock", "logind", ...
  secureField @22 :Bool; # the focused accessible is a password field (AT-SPI)
  role @23 :Text;        # the focused accessible's role name, when known
  reporter @24 :Text;    # "session": an imprint-session helper; "inproc": trackers in `imprint run`
  reporterUid @25 :UInt32;  # SO_PEERCRED uid of the helper that reported it
  unknownReason @26 :Text;  # why focus is unknown: no_session_helper, helper_exited, tracker_lost, ...
  windowX @27 :Int32;    # the focused window's rectangle in root (screen) coordinates
  windowY @28 :Int32;
  windowWidth @29 :UInt32;
  windowHeight @30 :UInt32;
  keymap @31 :Text;      # the session's live keymap (layout, group), when the helper knows it
}

# How a terminal program's tty reads input. `noEcho` is a password prompt (echo off, line
# buffered: getpass, sudo, ssh, `read -s`); `raw` is a line editor or full-screen program
# (echo and line buffering both off: they echo for themselves).
enum TtyMode {
  none @0;       # not a terminal program
  unknown @1;    # a terminal program whose tty state could not be read: treated as a prompt
  echo @2;
  noEcho @3;
  raw @4;
}

# Key events replaced by policy: their timing is kept, their identity is not.
struct Redaction {
  fromNs @0 :UInt64;
  toNs @1 :UInt64;
  rule @2 :Text;
  count @3 :UInt32;      # key presses replaced
  placeholder @4 :Text;
  focus @5 :UInt64;      # Focus.seq the keys were typed into
  device @6 :UInt32;     # Device.index of the keyboard (0xFFFFFFFF: several)
  keyTimesNs @7 :List(UInt64);  # press time of every replaced key: the timing is kept
}

# Per-interval activity for an application captured at level `counts`: no event, no identity.
struct Counts {
  fromNs @0 :UInt64;
  toNs @1 :UInt64;
  focus @2 :UInt64;
  keys @3 :UInt32;       # key presses
  clicks @4 :UInt32;     # button presses
  motion @5 :UInt32;     # pointer motion frames
  scroll @6 :UInt32;     # wheel events
}

# A paste shortcut (Ctrl+V, Shift+Insert, ...): that a paste happened, never what was pasted.
struct Paste {
  monoNs @0 :UInt64;
  focus @1 :UInt64;
  device @2 :UInt32;
}

# The policy in force when a batch was written.
struct PolicyStamp {
  version @0 :UInt64;
  hash @1 :Text;         # hex digest of the effective policy
  defaultLevel @2 :Text;
  rules @3 :UInt32;      # number of rules in the effective policy
}

struct Record {
  union {
    event @0 :InputEvent;
    device @1 :Device;
    gap @2 :Gap;
    focus @3 :Focus;
    redaction @4 :Redaction;
    policy @5 :PolicyStamp;
    counts @6 :Counts;
    paste @7 :Paste;
    pointer @8 :Pointer;
    display @9 :Display;
    window @10 :Window;
  }
}

# What made the session helper read the pointer position.
enum PointerTrigger {
  unknown @0;
  motion @1;
  press @2;
  release @3;
  scroll @4;
}

# The pointer position the display server reports, in its root (screen) coordinates. It is
# joined to the kernel's button and motion events by time; never estimated from deltas.
struct Pointer {
  monoNs @0 :UInt64;       # CLOCK_MONOTONIC when the helper read the position
  x @1 :Float64;
  y @2 :Float64;
  trigger @3 :PointerTrigger;
  button @4 :UInt32;       # the display server's button number for press/release (1 left, 2 middle, 3 right)
  serverTimeMs @5 :UInt32; # the display server's own event time, for ordering within its clock
  focus @6 :UInt64;        # Focus.seq in force (filled by the collector)
  eventMonoNs @7 :UInt64;  # CLOCK_MONOTONIC of the server event that triggered the read, when known
}

# One monitor of the session's screen.
struct Monitor {
  name @0 :Text;
  x @1 :Int32;
  y @2 :Int32;
  width @3 :UInt32;
  height @4 :UInt32;
  scale @5 :Float64;
  primary @6 :Bool;
}

# The session's display: its server, screen layout and pointer settings. Sent when it changes.
struct Display {
  monoNs @0 :UInt64;
  server @1 :Text;           # x11, sway, gnome, kde, hyprland, tty
  width @2 :UInt32;          # the root (screen) size in pixels
  height @3 :UInt32;
  monitors @4 :List(Monitor);
  pointer @5 :Bool;          # positions are available from this display server
  pointerUnavailable @6 :Text;  # why not, when they are not (e.g. "sway: no cursor position IPC")
  doubleClickMs @7 :UInt32;  # the desktop's double-click time (0: not known)
  doubleClickDistance @8 :UInt32;
  uid @9 :UInt32;            # SO_PEERCRED uid of the helper that reported it (filled by the collector)
  session @10 :Text;
}

# The focused window's rectangle changed (moved or resized) without a focus change.
struct Window {
  monoNs @0 :UInt64;
  focus @1 :UInt64;          # Focus.seq of the window
  x @2 :Int32;
  y @3 :Int32;
  width @4 :UInt32;
  height @5 :UInt32;
}

# One spool frame's payload: records admitted by policy, with where they came from.
struct Batch {
  formatVersion @0 :UInt16;
  ringEpoch @1 :UInt64;     # which collector ring the records were read from
  ringSeqFirst @2 :UInt64;  # first and last ring frame sequence numbers consumed
  ringSeqLast @3 :UInt64;
  policy @4 :PolicyStamp;
  records @5 :List(Record);
  bootId @6 :Text;             # /proc/sys/kernel/random/boot_id: monoNs values compare only within one boot
  realtimeOffsetNs @7 :Int64;  # CLOCK_REALTIME - CLOCK_MONOTONIC when the batch was written
}

# A message on /run/imprint/session.sock (one per SOCK_SEQPACKET packet).
struct SessionMessage {
  union {
    focus @0 :Focus;       # imprint-session -> collector: what has focus in the sender's session
    verdict @1 :Verdict;   # imprint-agent -> collector: what policy admits for a focus
    refresh @2 :Void;      # anyone -> collector: publish the BPF programs' counters now
    pointer @3 :Pointer;   # imprint-session -> collector: where the display server put the pointer
    display @4 :Display;   # imprint-session -> collector: the session's screen layout
    window @5 :Window;     # imprint-session -> collector: the focused window moved or resized
  }
}

# The agent's scope decision for one focus: which device classes it admits. When it admits
# none, the collector closes the in-kernel gate until the next focus change.
struct Verdict {
  focusSeq @0 :UInt64;
  ringEpoch @1 :UInt64;    # the collector run the focus sequence belongs to
  classes @2 :UInt32;      # bit per device class admitted: 1 keyboard, 2 pointer, 4 touchpad, 8 tablet, 16 virtual
}
