//! The rule for a member name inside an archive: relative, no `..`, no NUL or backslash, at most
//! [`super::MAX_NAME_BYTES`]; `./` and repeated slashes are spelled away so that two spellings of
//! one name are one name.

/// Normalises an archive path: strips `./` and empty components, refuses absolute paths and `..`.
pub fn normalise(raw: &str) -> Result<String, String> {
    if raw.starts_with('/') {
        return Err("absolute path".into());
    }
    if raw.contains('\0') || raw.contains('\\') {
        return Err("path contains a NUL or backslash".into());
    }
    let mut parts = Vec::new();
    for c in raw.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err("path contains `..`".into()),
            c => parts.push(c),
        }
    }
    Ok(parts.join("/"))
}

/// Resolves `.` and `..` in a joined link target; `None` if it climbs above the root.
pub fn resolve_dots(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    Some(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalise_refuses_escapes() {
        assert_eq!(normalise("./a/./b").unwrap(), "a/b");
        assert!(normalise("/etc/passwd").is_err());
        assert!(normalise("a/../../b").is_err());
        assert_eq!(resolve_dots("a/b/../c").as_deref(), Some("a/c"));
        assert_eq!(resolve_dots("a/../../c"), None);
    }
}
