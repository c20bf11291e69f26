//! Documents that must agree with the code, checked here so they cannot
//! drift: the README's configuration table (generated from the clap
//! definitions), the `--help` texts, the Dockerfile's ports, and the
//! architecture page and picture (every process with its ports, every RPC).
//!
//! The README table is generated: after changing a flag or variable run
//! `OTUS_UPDATE_DOCS=1 cargo test -p otus --test api docs::` and commit.

use std::collections::BTreeSet;

use clap::CommandFactory as _;
use otus::config::Cli;
use prost::Message as _;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
const TABLE_BEGIN: &str = "<!-- BEGIN configuration table: generated from the clap definitions by crates/otus/tests/api/docs.rs -->";
const TABLE_END: &str = "<!-- END configuration table -->";
const REGENERATE: &str =
    "regenerate it with `OTUS_UPDATE_DOCS=1 cargo test -p otus --test api docs::` and commit";

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{ROOT}/{path}")).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// One environment variable as the command line defines it.
#[derive(Debug)]
struct Var {
    name: String,
    /// (subcommand, default) for every subcommand that reads it.
    uses: Vec<(String, Option<String>)>,
    help: String,
}

fn subcommands() -> Vec<clap::Command> {
    Cli::command().get_subcommands().cloned().collect()
}

/// Every variable, in order of first appearance (all-in-one's first).
fn variables() -> Vec<Var> {
    let root = Cli::command();
    let subs = subcommands();
    let mut vars: Vec<Var> = Vec::new();
    let mut add = |sub: &str, arg: &clap::Arg| {
        let Some(env) = arg.get_env() else { return };
        let name = env.to_string_lossy().into_owned();
        let default = arg
            .get_default_values()
            .first()
            .map(|d| d.to_string_lossy().into_owned());
        let help = one_line(&arg.get_help().map(ToString::to_string).unwrap_or_default());
        match vars.iter_mut().find(|v| v.name == name) {
            Some(v) => v.uses.push((sub.to_owned(), default)),
            None => vars.push(Var {
                name,
                uses: vec![(sub.to_owned(), default)],
                help,
            }),
        }
    };
    for sub in &subs {
        for arg in sub.get_arguments() {
            add(sub.get_name(), arg);
        }
    }
    for arg in root.get_arguments().filter(|a| a.is_global_set()) {
        for sub in &subs {
            add(sub.get_name(), arg);
        }
    }
    vars
}

fn escape(cell: &str) -> String {
    cell.replace('|', "\\|")
}

fn default_cell(uses: &[(String, Option<String>)]) -> String {
    // Group subcommands by default; the most common default leads.
    let mut groups: Vec<(Option<String>, Vec<&str>)> = Vec::new();
    for (sub, default) in uses {
        match groups.iter_mut().find(|(d, _)| d == default) {
            Some((_, subs)) => subs.push(sub),
            None => groups.push((default.clone(), vec![sub])),
        }
    }
    groups.sort_by_key(|(_, subs)| std::cmp::Reverse(subs.len()));
    let show = |d: &Option<String>| d.as_ref().map_or("unset".to_owned(), |d| format!("`{d}`"));
    let mut cell = show(&groups[0].0);
    if groups.len() > 1 {
        let rest: Vec<String> = groups[1..]
            .iter()
            .map(|(d, subs)| format!("{} {}", subs.join(", "), show(d)))
            .collect();
        cell.push_str(&format!(" ({})", rest.join("; ")));
    }
    cell
}

/// The configuration table as the code defines it: one row per variable.
fn generated_rows() -> Vec<(String, String)> {
    let all: BTreeSet<String> = subcommands()
        .iter()
        .map(|s| s.get_name().to_owned())
        .collect();
    let mut rows: Vec<(String, String)> = variables()
        .into_iter()
        .map(|v| {
            let used: BTreeSet<String> = v.uses.iter().map(|(s, _)| s.clone()).collect();
            let used_by = if used == all {
                "all".to_owned()
            } else {
                v.uses
                    .iter()
                    .map(|(s, _)| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let row = format!(
                "| `{}` | {} | {} | {} |",
                v.name,
                escape(&default_cell(&v.uses)),
                used_by,
                escape(&v.help)
            );
            (v.name, row)
        })
        .collect();
    for e in otus_telemetry::ENVIRONMENT {
        let row = format!(
            "| `{}` | {} | all | {} |",
            e.name,
            escape(e.default),
            escape(e.meaning)
        );
        rows.push((e.name.to_owned(), row));
    }
    rows
}

fn generated_table() -> String {
    let mut table = String::from("| variable | default | used by | meaning |\n|---|---|---|---|\n");
    for (_, row) in generated_rows() {
        table.push_str(&row);
        table.push('\n');
    }
    table
}

/// The README's table rows by variable name (the first backticked cell).
fn documented_rows(table: &str) -> Vec<(String, String)> {
    table
        .lines()
        .filter_map(|line| {
            let name = line.strip_prefix("| `")?.split('`').next()?;
            Some((name.to_owned(), line.to_owned()))
        })
        .collect()
}

#[test]
fn readme_configuration_table_matches_the_command_line() {
    let readme = read("README.md");
    let (Some(begin), Some(end)) = (readme.find(TABLE_BEGIN), readme.find(TABLE_END)) else {
        panic!("README.md lacks the configuration table markers:\n{TABLE_BEGIN}\n{TABLE_END}");
    };
    let body_start = begin + TABLE_BEGIN.len() + 1;
    let documented = &readme[body_start..end];
    let expected = generated_table();
    if documented == expected {
        return;
    }
    if std::env::var_os("OTUS_UPDATE_DOCS").is_some() {
        let updated = format!("{}{expected}{}", &readme[..body_start], &readme[end..]);
        std::fs::write(format!("{ROOT}/README.md"), updated).expect("write README.md");
        eprintln!("README.md configuration table regenerated");
        return;
    }
    let have = documented_rows(documented);
    let want = generated_rows();
    let mut problems = Vec::new();
    for (name, row) in &want {
        match have.iter().find(|(n, _)| n == name) {
            None => problems.push(format!("`{name}` is read by the code but not documented")),
            Some((_, line)) if line != row => problems.push(format!(
                "`{name}` is documented differently:\n    README: {line}\n    code:   {row}"
            )),
            Some(_) => {}
        }
    }
    for (name, _) in &have {
        if !want.iter().any(|(n, _)| n == name) {
            problems.push(format!("`{name}` is documented but nothing reads it"));
        }
    }
    if problems.is_empty() {
        problems.push("rows are in a different order or the header differs".to_owned());
    }
    panic!(
        "README.md configuration table disagrees with the code:\n  {}\n{REGENERATE}",
        problems.join("\n  ")
    );
}

/// Server processes (those with an admin port), except all-in-one.
fn servers() -> Vec<clap::Command> {
    subcommands()
        .into_iter()
        .filter(|s| s.get_name() != "all-in-one" && default_of(s, "ADMIN_ADDR").is_some())
        .collect()
}

fn default_of(sub: &clap::Command, env: &str) -> Option<String> {
    sub.get_arguments()
        .find(|a| a.get_env().is_some_and(|e| e == env))
        .and_then(|a| a.get_default_values().first())
        .map(|d| d.to_string_lossy().into_owned())
}

fn port_of(addr: &str) -> String {
    addr.rsplit(':').next().unwrap_or_default().to_owned()
}

/// (name, listen port, admin port) of every server process.
fn server_ports() -> Vec<(String, String, String)> {
    servers()
        .iter()
        .map(|s| {
            let listen = default_of(s, "GRPC_ADDR")
                .or_else(|| default_of(s, "HTTP_ADDR"))
                .unwrap_or_else(|| panic!("{} has no listen address", s.get_name()));
            let admin = default_of(s, "ADMIN_ADDR").unwrap_or_default();
            (s.get_name().to_owned(), port_of(&listen), port_of(&admin))
        })
        .collect()
}

#[test]
fn help_texts_name_every_process() {
    let root = Cli::command();
    let about = root
        .get_about()
        .map(ToString::to_string)
        .unwrap_or_default();
    for sub in subcommands() {
        assert!(
            about.contains(sub.get_name()),
            "`otus --help` (the otus crate's description) does not mention `{}`: {about}",
            sub.get_name()
        );
    }
    let all_in_one = root
        .find_subcommand("all-in-one")
        .and_then(|s| s.get_about())
        .map(ToString::to_string)
        .unwrap_or_default();
    for server in servers() {
        assert!(
            all_in_one.contains(server.get_name()),
            "`otus all-in-one --help` does not say it runs `{}`: {all_in_one}",
            server.get_name()
        );
    }
}

#[test]
fn dockerfile_exposes_every_default_port() {
    let dockerfile = read("Dockerfile");
    let lines: Vec<&str> = dockerfile.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("EXPOSE "))
        .expect("Dockerfile has an EXPOSE line");
    let exposed: BTreeSet<String> = lines[at]["EXPOSE ".len()..]
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let mut expected = BTreeSet::new();
    for (_, listen, admin) in server_ports() {
        expected.insert(listen);
        expected.insert(admin);
    }
    assert_eq!(
        exposed, expected,
        "Dockerfile EXPOSE vs the processes' default ports"
    );
    let comment = lines[at - 1];
    for port in &expected {
        assert!(
            comment.contains(port.as_str()),
            "the comment above EXPOSE does not explain port {port}: {comment}"
        );
    }
    let header: String = lines
        .iter()
        .take_while(|l| l.starts_with('#'))
        .copied()
        .collect();
    for sub in subcommands() {
        assert!(
            header.contains(sub.get_name()),
            "the Dockerfile's header comment does not mention `{}`",
            sub.get_name()
        );
    }
}

/// Every RPC method of every otus gRPC service.
fn rpc_methods() -> Vec<(String, String)> {
    let set = prost_types::FileDescriptorSet::decode(otus_proto::FILE_DESCRIPTOR_SET)
        .expect("descriptor set decodes");
    let mut methods = Vec::new();
    for file in set.file {
        if !file.package().starts_with("otus.") {
            continue;
        }
        for service in &file.service {
            for method in &service.method {
                methods.push((service.name().to_owned(), method.name().to_owned()));
            }
        }
    }
    methods
}

fn mentions_word(text: &str, word: &str) -> bool {
    text.match_indices(word).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + word.len()..].chars().next();
        !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
    })
}

#[test]
fn architecture_picture_and_page_show_every_process_and_rpc() {
    // Graphviz line breaks (`\n`) separate words too.
    let dot = read("docs/architecture.dot").replace("\\n", " ");
    let page = read("docs/architecture.md");
    let readme = one_line(&read("README.md"));
    let servers = server_ports();
    assert!(
        servers.len() >= 4,
        "edge, users, auth, catalog at least: {servers:?}"
    );
    for (name, listen, admin) in &servers {
        let framework = if name == "edge" { "axum" } else { "tonic" };
        let label = format!("{name} ({framework}, :{listen})");
        assert!(
            dot.contains(&format!("label=\"{label}")),
            "docs/architecture.dot has no node `{label}`"
        );
        assert!(
            page.contains(&format!("| **{name}** ({framework}, `:{listen}`)")),
            "docs/architecture.md's parts table has no row for {name} on :{listen}"
        );
        assert!(
            one_line(&page).contains(&format!("{name} `:{admin}`")),
            "docs/architecture.md does not give {name}'s admin port :{admin}"
        );
        assert!(
            readme.contains(&label),
            "the README's picture does not show `{label}`"
        );
    }
    let methods = rpc_methods();
    assert!(methods.len() >= 10, "RPCs found: {methods:?}");
    for (service, method) in methods {
        assert!(
            mentions_word(&dot, &method),
            "docs/architecture.dot does not show {service}/{method}"
        );
    }
}
