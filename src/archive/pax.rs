//! PAX extended header records (`"%d %s=%s\n"`), read strictly. Readers disagree on what a
//! repeated key means (the first or the last wins), so a key given twice is refused; sparse files
//! (`GNU.sparse.*`) change what an entry's data means and are refused too. Only `path`,
//! `linkpath` and `size` matter to airlock; other keys (times, owners, `SCHILY.*`) are ignored.

use std::collections::HashSet;

/// What a PAX header says about the entry that follows it.
#[derive(Debug, Default)]
pub(super) struct Pax {
    pub path: Option<String>,
    pub linkpath: Option<String>,
    pub size: Option<u64>,
}

pub(super) fn parse(mut data: &[u8]) -> Result<Pax, String> {
    let mut pax = Pax::default();
    let mut keys = HashSet::new();
    while !data.is_empty() {
        let (key, value, rest) = record(data)?;
        data = rest;
        if key.starts_with("GNU.sparse.") {
            return Err(format!("PAX record `{}`: sparse files are not supported", crate::error::shown(key)));
        }
        if !keys.insert(key.to_owned()) {
            return Err(format!(
                "PAX key `{}` is given twice (tar readers disagree on which wins)",
                crate::error::shown(key)
            ));
        }
        let text = || match std::str::from_utf8(value) {
            Ok("") => Err(format!("PAX record `{key}` is empty")),
            Ok(v) => Ok(v.to_owned()),
            Err(_) => Err(format!("PAX record `{key}` is not UTF-8")),
        };
        match key {
            "path" => pax.path = Some(text()?),
            "linkpath" => pax.linkpath = Some(text()?),
            "size" => {
                let v = text()?;
                let n = v.parse::<u64>().ok().filter(|_| v.bytes().all(|b| b.is_ascii_digit()));
                pax.size = Some(n.ok_or("PAX size record is not a number")?);
            }
            _ => {}
        }
    }
    Ok(pax)
}

/// One record: its key, its value, and what follows it.
fn record(data: &[u8]) -> Result<(&str, &[u8], &[u8]), String> {
    let bad = || "malformed PAX record".to_owned();
    let space = data.iter().take(20).position(|b| *b == b' ').ok_or_else(bad)?;
    let len: usize = std::str::from_utf8(&data[..space]).ok().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
    if len <= space + 1 || len > data.len() || data[len - 1] != b'\n' {
        return Err(bad());
    }
    let body = &data[space + 1..len - 1];
    let eq = body.iter().position(|b| *b == b'=').ok_or_else(bad)?;
    let key = std::str::from_utf8(&body[..eq]).map_err(|_| "PAX key is not UTF-8".to_owned())?;
    if key.is_empty() {
        return Err(bad());
    }
    Ok((key, &body[eq + 1..], &data[len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_read_and_repeats_or_sparse_refused() {
        let p = parse(b"19 path=a/b/c.json\n11 size=42\n").unwrap();
        assert_eq!(p.path.as_deref(), Some("a/b/c.json"));
        assert_eq!(p.size, Some(42));
        assert!(parse(b"11 size=42\n11 size=10\n").unwrap_err().contains("twice"));
        assert!(parse(b"22 GNU.sparse.major=1\n").unwrap_err().contains("sparse"));
        assert!(parse(b"99 size=1\n").is_err());
        assert!(parse(b"11 size=-1\n").is_err());
        assert!(parse(b"11 size=+1\n").is_err());
        assert!(parse(b"8 path=\n").is_err());
        assert!(parse(b"garbage").is_err());
    }
}
