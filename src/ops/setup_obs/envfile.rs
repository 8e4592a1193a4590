//! The env file `gwctl setup obs` writes for the collector: `OPENOBSERVE_AUTH=Basic ...` and
//! `OPENOBSERVE_ORG=...`, in the `KEY=value` syntax that compose's `env_file` and systemd's
//! `EnvironmentFile` both read (no quotes: both take the rest of the line verbatim).
//!
//! An existing file keeps its other lines, in order: only the two variables are set (in place
//! where they already are, appended otherwise), so the file may be shared with other settings.

/// The variable that carries the collector's `Authorization` header value.
pub const AUTH_VAR: &str = "OPENOBSERVE_AUTH";
/// The variable that carries the organization.
pub const ORG_VAR: &str = "OPENOBSERVE_ORG";

/// The env file's new text: `existing` (if any) with [`AUTH_VAR`] set to `auth` and [`ORG_VAR`]
/// to `org`. Duplicate definitions of either are dropped (the first one is replaced).
pub fn render(existing: Option<&str>, auth: &str, org: &str) -> String {
    let wanted = [(AUTH_VAR, auth), (ORG_VAR, org)];
    let mut seen = [false; 2];
    let mut out = String::new();
    for line in existing.unwrap_or_default().lines() {
        match wanted.iter().position(|(var, _)| defines(line, var)) {
            Some(i) if seen[i] => {}
            Some(i) => {
                seen[i] = true;
                push_var(&mut out, wanted[i].0, wanted[i].1);
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    for (i, (var, value)) in wanted.iter().enumerate() {
        if !seen[i] {
            push_var(&mut out, var, value);
        }
    }
    out
}

fn push_var(out: &mut String, var: &str, value: &str) {
    out.push_str(var);
    out.push('=');
    out.push_str(value);
    out.push('\n');
}

/// Whether `line` assigns `var` (`VAR=...`, optionally `export VAR=...`).
fn defines(line: &str, var: &str) -> bool {
    let line = line.trim_start();
    let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
    line.strip_prefix(var)
        .is_some_and(|rest| rest.trim_start().starts_with('='))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_file_has_exactly_the_two_lines() {
        assert_eq!(
            render(None, "Basic YTpi", "default"),
            "OPENOBSERVE_AUTH=Basic YTpi\nOPENOBSERVE_ORG=default\n"
        );
    }

    #[test]
    fn other_lines_are_kept_and_ours_replaced_in_place() {
        let old = "# collector env\nFOO=1\nexport OPENOBSERVE_AUTH=Basic old\nOPENOBSERVE_AUTHX=keep\nOPENOBSERVE_AUTH=dup\nBAR=2";
        assert_eq!(
            render(Some(old), "Basic new", "gw"),
            "# collector env\nFOO=1\nOPENOBSERVE_AUTH=Basic new\nOPENOBSERVE_AUTHX=keep\nBAR=2\nOPENOBSERVE_ORG=gw\n"
        );
    }

    #[test]
    fn rendering_its_own_output_again_changes_nothing() {
        let once = render(Some("A=1\n"), "Basic x", "o");
        assert_eq!(render(Some(&once), "Basic x", "o"), once);
    }
}
