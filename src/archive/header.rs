//! One 512-byte tar header block, decoded strictly: the checksum must match, numbers must be
//! well-formed octal or base-256, and the format (POSIX ustar, GNU, or old v7) decides whether the
//! `prefix` field is part of the name, as it does for GNU tar, Go's archive/tar and Python.

pub(super) const BLOCK: usize = 512;

/// The header's format, from its magic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    Ustar,
    Gnu,
    V7,
}

/// The fields airlock uses, still raw bytes where a name is concerned.
pub(super) struct Header {
    pub format: Format,
    pub name: Vec<u8>,
    pub link: Vec<u8>,
    pub kind: u8,
    pub size: u64,
}

/// Decodes a header block; `Err` says what is wrong with it.
pub(super) fn parse(block: &[u8; BLOCK]) -> Result<Header, String> {
    check_sum(block)?;
    let format = match (&block[257..263], &block[263..265]) {
        (b"ustar\0", b"00") => Format::Ustar,
        (b"ustar ", b" \0") => Format::Gnu,
        (magic, _) if magic.iter().all(|b| *b == 0) => Format::V7,
        _ => return Err("unknown tar header format (bad magic)".into()),
    };
    let mut name = field(&block[..100]).to_vec();
    let prefix = field(&block[345..500]);
    if format == Format::Ustar && !prefix.is_empty() {
        name = [prefix, b"/", &name].concat();
    }
    let size = number(&block[124..136]).map_err(|why| format!("size field: {why}"))?;
    Ok(Header { format, name, link: field(&block[157..257]).to_vec(), kind: block[156], size })
}

/// A NUL-terminated string field (no NUL when it fills the field).
fn field(bytes: &[u8]) -> &[u8] {
    bytes.iter().position(|b| *b == 0).map_or(bytes, |n| &bytes[..n])
}

fn check_sum(block: &[u8; BLOCK]) -> Result<(), String> {
    let stored = number(&block[148..156]).map_err(|why| format!("checksum field: {why}"))?;
    let sum: u64 =
        block.iter().enumerate().map(|(i, b)| if (148..156).contains(&i) { 32 } else { u64::from(*b) }).sum();
    if stored != sum {
        return Err(format!("header checksum is {stored}, the header sums to {sum} (not a tar archive, or corrupt)"));
    }
    Ok(())
}

/// Octal (space/NUL padded) or GNU base-256 (high bit set); negative numbers are refused.
pub(super) fn number(bytes: &[u8]) -> Result<u64, String> {
    if bytes[0] & 0x80 != 0 {
        if bytes[0] == 0xff {
            return Err("negative base-256 number".into());
        }
        let mut n: u64 = u64::from(bytes[0] & 0x7f);
        for b in &bytes[1..] {
            n = n.checked_mul(256).and_then(|n| n.checked_add(u64::from(*b))).ok_or("base-256 number overflows")?;
        }
        return Ok(n);
    }
    let text = bytes.iter().skip_while(|b| **b == b' ').take_while(|b| **b != 0 && **b != b' ');
    let mut n: u64 = 0;
    for b in text {
        if !(b'0'..=b'7').contains(b) {
            return Err(format!("{:?} is not an octal number", String::from_utf8_lossy(bytes)));
        }
        n = n.checked_mul(8).and_then(|n| n.checked_add(u64::from(b - b'0'))).ok_or("octal number overflows")?;
    }
    let rest = bytes.iter().skip_while(|b| **b == b' ').skip_while(|b| **b != 0 && **b != b' ');
    if rest.clone().any(|b| *b != 0 && *b != b' ') {
        return Err(format!("{:?} is not an octal number", String::from_utf8_lossy(bytes)));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_octal_or_base_256_and_nothing_else() {
        assert_eq!(number(b"0000644\0"), Ok(0o644));
        assert_eq!(number(b"  12 \0\0\0"), Ok(0o12));
        assert_eq!(number(b"\0\0\0\0"), Ok(0));
        assert_eq!(number(&[0x80, 0, 0, 1, 0]), Ok(256));
        assert!(number(b"12 9\0").is_err());
        assert!(number(b"0009\0").is_err());
        assert!(number(&[0xff; 12]).is_err());
        assert!(number(&[0x80, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).is_err());
    }
}
