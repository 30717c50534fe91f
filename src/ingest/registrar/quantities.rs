//! The seed's resource sizes (`"1GB"`, `"512 MB"`, `"2 cores"`) as Kubernetes quantities.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde_json::Value;

use super::refused::Refused;

/// A memory size as the seed writes it (`"1GB"`, `"512 MB"`, `"2GiB"`, a number of bytes) as a
/// Kubernetes quantity (`1G`, `512M`, `2Gi`).
pub fn memory_quantity(value: &Value, field: &str) -> Result<Quantity, Refused> {
    let refused = || {
        Refused::new(
            field,
            format!("{value} is not a memory size; use e.g. \"512MB\", \"1GB\" or \"2Gi\""),
        )
    };
    let text = match value {
        Value::Number(n) if n.as_u64().is_some() => return Ok(Quantity(n.to_string())),
        Value::String(s) => s.trim(),
        _ => return Err(refused()),
    };
    let (number, unit) = split_number(text).ok_or_else(refused)?;
    let unit = unit.trim();
    let lower = unit.to_ascii_lowercase();
    let suffix = match lower.as_str() {
        "" | "b" | "byte" | "bytes" => "",
        "k" | "kb" => "k",
        "m" | "mb" => "M",
        "g" | "gb" => "G",
        "t" | "tb" => "T",
        "p" | "pb" => "P",
        "ki" | "kib" => "Ki",
        "mi" | "mib" => "Mi",
        "gi" | "gib" => "Gi",
        "ti" | "tib" => "Ti",
        "pi" | "pib" => "Pi",
        _ => return Err(refused()),
    };
    Ok(Quantity(format!("{number}{suffix}")))
}

/// A CPU amount as the seed writes it (`"2 cores"`, `"0.5 vCPU"`, `"500m"`, `2`) as a Kubernetes
/// quantity (`2`, `0.5`, `500m`).
pub fn cpu_quantity(value: &Value, field: &str) -> Result<Quantity, Refused> {
    let refused = || {
        Refused::new(
            field,
            format!("{value} is not a CPU amount; use e.g. \"2 cores\", \"0.5\" or \"500m\""),
        )
    };
    let text = match value {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.trim().to_string(),
        _ => return Err(refused()),
    };
    let (number, unit) = split_number(&text).ok_or_else(refused)?;
    let suffix = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "core" | "cores" | "cpu" | "cpus" | "vcpu" | "vcpus" => "",
        "m" | "millicore" | "millicores" | "millicpu" => "m",
        _ => return Err(refused()),
    };
    Ok(Quantity(format!("{number}{suffix}")))
}

/// `"1.5 GB"` → (`"1.5"`, `" GB"`): a non-negative decimal number and what follows it.
fn split_number(text: &str) -> Option<(&str, &str)> {
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let number = &text[..end];
    let valid = !number.is_empty()
        && number.len() <= 20
        && number.bytes().filter(|b| *b == b'.').count() <= 1
        && !number.starts_with('.')
        && !number.ends_with('.');
    valid.then(|| (number, &text[end..]))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn seed_sizes_translate_to_quantities() {
        let mem = |v: Value| memory_quantity(&v, "m").map(|q| q.0);
        assert_eq!(mem(json!("1GB")).unwrap(), "1G");
        assert_eq!(mem(json!("512 MB")).unwrap(), "512M");
        assert_eq!(mem(json!("2GiB")).unwrap(), "2Gi");
        assert_eq!(mem(json!("1.5gb")).unwrap(), "1.5G");
        assert_eq!(mem(json!(1048576)).unwrap(), "1048576");
        assert!(mem(json!("lots"))
            .unwrap_err()
            .problem
            .contains("not a memory size"));
        assert!(mem(json!("1 XB")).is_err());
        assert!(mem(json!("-1GB")).is_err());
        let cpu = |v: Value| cpu_quantity(&v, "c").map(|q| q.0);
        assert_eq!(cpu(json!("2 cores")).unwrap(), "2");
        assert_eq!(cpu(json!("1 core")).unwrap(), "1");
        assert_eq!(cpu(json!("0.5 vCPU")).unwrap(), "0.5");
        assert_eq!(cpu(json!("500m")).unwrap(), "500m");
        assert_eq!(cpu(json!(4)).unwrap(), "4");
        assert_eq!(cpu(json!("two")).unwrap_err().field, "c");
    }
}
