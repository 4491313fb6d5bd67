//! Just enough of a BTF reader to find, in the running kernel's `/sys/kernel/btf/vmlinux`, the
//! byte offsets of the `struct input_dev` and `struct input_handle` members the eBPF programs
//! read, and to check that each member has the type the programs assume.
//!
//! This is how device identity holds across kernels (5.15 to 6.x and later): the offsets are
//! never compiled in. Rust eBPF cannot emit CO-RE relocations, and correlating events with an
//! evdev enumeration would need the event nodes open; reading the running kernel's own type
//! information gives the exact layout of this kernel, and a member that moved, was renamed or
//! changed type is refused (then the collector falls back to evdev) instead of misread.

use imprint_common::KernelLayout;

const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_TYPE_TAG: u32 = 18;

#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error("malformed BTF: {0}")]
    Malformed(&'static str),
    #[error("BTF has no struct {0}")]
    NoStruct(String),
    #[error("BTF: struct {0} has no member {1}")]
    NoMember(String, String),
    #[error("BTF: {0}.{1} is not {2}")]
    WrongType(String, String, &'static str),
}

struct Member {
    name_off: u32,
    type_id: u32,
    offset_bits: u32,
}

struct Type {
    name_off: u32,
    kind: u32,
    /// Size in bytes (int, struct, union) or the referenced type id (ptr, typedef, ...).
    size_or_type: u32,
    members: Vec<Member>,
}

/// The parsed type section of a BTF blob.
pub struct Btf {
    /// Index = type id; id 0 is `void`.
    types: Vec<Type>,
    strings: Vec<u8>,
}

impl Btf {
    /// Reads the running kernel's BTF.
    pub fn from_sys_fs() -> Result<Btf, std::io::Error> {
        let data = std::fs::read("/sys/kernel/btf/vmlinux")?;
        Btf::parse(&data).map_err(std::io::Error::other)
    }

    /// Parses a little-endian BTF blob (the kernel's format on this machine).
    pub fn parse(data: &[u8]) -> Result<Btf, BtfError> {
        let u32_at = |off: usize| -> Result<u32, BtfError> {
            data.get(off..off + 4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or(BtfError::Malformed("truncated"))
        };
        if data.get(0..2) != Some(&[0x9f, 0xeb]) {
            return Err(BtfError::Malformed("bad magic (not little-endian BTF?)"));
        }
        let hdr_len = u32_at(4)? as usize;
        let (type_off, type_len) = (u32_at(8)? as usize, u32_at(12)? as usize);
        let (str_off, str_len) = (u32_at(16)? as usize, u32_at(20)? as usize);
        let strings = data
            .get(hdr_len + str_off..hdr_len + str_off + str_len)
            .ok_or(BtfError::Malformed("string section out of bounds"))?
            .to_vec();
        let start = hdr_len + type_off;
        let end = start + type_len;
        if end > data.len() {
            return Err(BtfError::Malformed("type section out of bounds"));
        }
        let mut types = vec![Type {
            name_off: 0,
            kind: 0,
            size_or_type: 0,
            members: Vec::new(),
        }];
        let mut at = start;
        while at < end {
            let name_off = u32_at(at)?;
            let info = u32_at(at + 4)?;
            let size_or_type = u32_at(at + 8)?;
            at += 12;
            let vlen = (info & 0xffff) as usize;
            let kind = (info >> 24) & 0x1f;
            let kind_flag = info >> 31 != 0;
            let mut members = Vec::new();
            let extra = match kind {
                KIND_INT | 14 | 17 => 4, // int, var, decl_tag
                KIND_ARRAY => 12,        // btf_array
                KIND_STRUCT | KIND_UNION => {
                    for i in 0..vlen {
                        let m = at + i * 12;
                        let offset = u32_at(m + 8)?;
                        members.push(Member {
                            name_off: u32_at(m)?,
                            type_id: u32_at(m + 4)?,
                            offset_bits: if kind_flag {
                                offset & 0x00ff_ffff
                            } else {
                                offset
                            },
                        });
                    }
                    12 * vlen
                }
                6 | 13 => 8 * vlen,   // enum, func_proto
                15 | 19 => 12 * vlen, // datasec, enum64
                _ => 0,
            };
            at += extra;
            types.push(Type {
                name_off,
                kind,
                size_or_type,
                members,
            });
        }
        Ok(Btf { types, strings })
    }

    fn name(&self, off: u32) -> &str {
        let rest = self.strings.get(off as usize..).unwrap_or_default();
        let len = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        std::str::from_utf8(&rest[..len]).unwrap_or("")
    }

    /// Follows typedefs and qualifiers.
    fn resolve(&self, mut id: u32) -> Option<&Type> {
        for _ in 0..32 {
            let t = self.types.get(id as usize)?;
            match t.kind {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = t.size_or_type
                }
                _ => return Some(t),
            }
        }
        None
    }

    /// The complete (non-forward) struct called `name`.
    fn struct_named(&self, name: &str) -> Result<&Type, BtfError> {
        self.types
            .iter()
            .find(|t| {
                t.kind == KIND_STRUCT && !t.members.is_empty() && self.name(t.name_off) == name
            })
            .ok_or_else(|| BtfError::NoStruct(name.into()))
    }

    /// Byte offset and type of `member` in `ty`, looking into anonymous structs and unions.
    fn find_member<'a>(&'a self, ty: &'a Type, member: &str) -> Option<(u32, &'a Type)> {
        for m in &ty.members {
            let mt = self.resolve(m.type_id)?;
            if self.name(m.name_off) == member {
                return Some((m.offset_bits / 8, mt));
            }
            if m.name_off == 0 && matches!(mt.kind, KIND_STRUCT | KIND_UNION) {
                if let Some((off, t)) = self.find_member(mt, member) {
                    return Some((m.offset_bits / 8 + off, t));
                }
            }
        }
        None
    }

    /// `struct_name.member`'s byte offset, checked to be of `kind` (and, for a struct, of the
    /// given name and size).
    fn member(
        &self,
        struct_name: &str,
        member: &str,
        kind: u32,
        what: &'static str,
        check: impl Fn(&Btf, &Type) -> bool,
    ) -> Result<(u32, &Type), BtfError> {
        let st = self.struct_named(struct_name)?;
        let (off, t) = self
            .find_member(st, member)
            .ok_or_else(|| BtfError::NoMember(struct_name.into(), member.into()))?;
        if t.kind != kind || !check(self, t) {
            return Err(BtfError::WrongType(struct_name.into(), member.into(), what));
        }
        Ok((off, t))
    }

    /// The offsets the eBPF programs need, each checked against its expected type.
    pub fn input_layout(&self) -> Result<KernelLayout, BtfError> {
        let any = |_: &Btf, _: &Type| true;
        let ptr = |s: &str, m: &str| self.member(s, m, KIND_PTR, "a pointer", any).map(|r| r.0);
        let (dev_id, _) = self.member(
            "input_dev",
            "id",
            KIND_STRUCT,
            "struct input_id (8 bytes)",
            |b, t| b.name(t.name_off) == "input_id" && t.size_or_type == 8,
        )?;
        let (dev_dev, _) =
            self.member("input_dev", "dev", KIND_STRUCT, "struct device", |b, t| {
                b.name(t.name_off) == "device"
            })?;
        let (dev_timer, _) = self.member(
            "input_dev",
            "timer",
            KIND_STRUCT,
            "struct timer_list",
            |b, t| b.name(t.name_off) == "timer_list",
        )?;
        let (dev_repeat_key, _) = self.member(
            "input_dev",
            "repeat_key",
            KIND_INT,
            "a 4-byte int",
            |_, t| t.size_or_type == 4,
        )?;
        let (dev_key, _) = self.member("input_dev", "key", KIND_ARRAY, "an array", any)?;
        let (dev_evbit, _) = self.member("input_dev", "evbit", KIND_ARRAY, "an array", any)?;
        Ok(KernelLayout {
            valid: 1,
            dev_name: ptr("input_dev", "name")?,
            dev_phys: ptr("input_dev", "phys")?,
            dev_id,
            dev_parent: dev_dev + ptr("device", "parent")?,
            dev_timer,
            dev_repeat_key,
            dev_key,
            dev_evbit,
            handle_dev: ptr("input_handle", "dev")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The host kernel's BTF. A kernel without it fails the test (rather than passing with
    /// nothing checked): the eBPF source cannot load there, and this is the test that says so.
    #[test]
    fn finds_the_input_layout_in_the_running_kernel() {
        let btf = Btf::from_sys_fs().unwrap_or_else(|e| {
            panic!(
                "cannot read /sys/kernel/btf/vmlinux ({e}): this kernel has no BTF \
                 (CONFIG_DEBUG_INFO_BTF=y), so imprint's eBPF source cannot load on it and falls \
                 back to evdev; run the tests on a kernel with BTF (Debian's have it since 5.10)"
            )
        });
        let layout = btf.input_layout().expect("input_dev layout");
        assert_eq!(layout.valid, 1);
        // `name` is the first pointer of struct input_dev in every kernel since 2.6.
        assert_eq!(layout.dev_name, 0);
        assert!(layout.dev_phys > layout.dev_name);
        assert!(layout.dev_id > layout.dev_phys);
        assert!(layout.dev_parent > layout.dev_timer);
    }

    #[test]
    fn rejects_garbage() {
        assert!(Btf::parse(b"not btf at all, not at all").is_err());
        assert!(Btf::parse(&[0x9f, 0xeb, 1, 0, 24, 0, 0, 0]).is_err());
    }
}
