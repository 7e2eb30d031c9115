//! `--volume-size`: a byte count with a binary unit (`4095M`, `25G`), or `fat32` for the largest
//! file FAT32 holds.

/// The largest file FAT32 can hold: 4 GiB − 1.
pub const FAT32_MAX: u64 = (4 << 30) - 1;
/// The smallest volume accepted: small enough for tests, large enough that no bundle needs
/// more parts than three digits name for long.
pub const MIN_VOLUME: u64 = 4096;

/// Parses a volume size: digits with an optional `K`, `M`, `G` or `T` (powers of 1024, `KiB` and
/// `KB` spell the same), or `fat32`.
pub fn parse(text: &str) -> Result<u64, String> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("fat32") {
        return Ok(FAT32_MAX);
    }
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = t.split_at(digits);
    let shift = match unit.to_ascii_uppercase().trim_end_matches("IB").trim_end_matches('B') {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(format!("`{}`: not a size (e.g. 4095M, 25G, fat32)", text.escape_debug())),
    };
    let n: u64 =
        number.parse().map_err(|_| format!("`{}`: not a size (e.g. 4095M, 25G, fat32)", text.escape_debug()))?;
    let bytes = n.checked_mul(1 << shift).ok_or_else(|| format!("`{}` is too large", text.escape_debug()))?;
    if bytes < MIN_VOLUME {
        return Err(format!("`{}` is smaller than the smallest volume, {MIN_VOLUME} bytes", text.escape_debug()));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(parse("4095M"), Ok(4095 << 20));
        assert_eq!(parse("25G"), Ok(25 << 30));
        assert_eq!(parse("64KiB"), Ok(64 << 10));
        assert_eq!(parse("FAT32"), Ok(FAT32_MAX));
        assert_eq!(parse("5000"), Ok(5000));
        for bad in ["", "G", "4.5G", "12X", "100", "99999999999T", "-1G"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
