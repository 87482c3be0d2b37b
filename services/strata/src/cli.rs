//! Command-line parsing in the style of Mimir and Go's `flag` package: every
//! config key is also a flag named by its dotted YAML path
//! (`-server.http_listen_port=9009`), written with one dash or two, with `_` or
//! `-` between words. Flags override the config file, which overrides defaults.

use std::ffi::OsString;

use clap::{Arg, ArgAction, Command};
use serde_yaml::Value;

use crate::config::{Config, ConfigError, FIELD_DOCS};

#[derive(Debug)]
pub(crate) enum Invocation {
    /// Print this text and exit successfully.
    Print(String),
    /// Check the config and exit.
    Verify(Box<Config>),
    Run(Box<Config>),
}

const CONFIG_FILE: &str = "config.file";
const CONFIG_VERIFY: &str = "config.verify";
const CONFIG_EXPAND_ENV: &str = "config.expand-env";
const VERSION: &str = "version";

/// Go's flag package accepts `-name=value`; clap wants `--name=value`.
fn normalise_dashes(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut after_terminator = false;
    for (i, arg) in args.into_iter().enumerate() {
        let s = arg.to_string_lossy();
        if i == 0 || after_terminator {
            out.push(arg);
            continue;
        }
        if s == "--" {
            after_terminator = true;
            out.push(arg);
        } else if s.starts_with('-') && !s.starts_with("--") && s.len() > 2 {
            out.push(OsString::from(format!("-{s}")));
        } else {
            out.push(arg);
        }
    }
    out
}

fn command() -> Command {
    let mut cmd = Command::new("strata")
        .about("Strata: long-term, horizontally scalable, multi-tenant storage for Prometheus metrics.")
        .override_usage("strata [-target=all] [-config.file=strata.yaml] [-<dotted.config.key>=<value> ...]")
        .after_help("Every config key can be set by a flag named by its dotted YAML path; flags win over the config file. See docs/configuration.md.")
        .disable_version_flag(true)
        .arg(Arg::new(CONFIG_FILE).long(CONFIG_FILE).value_name("path").help("YAML config file to load."))
        .arg(
            Arg::new(CONFIG_VERIFY)
                .long(CONFIG_VERIFY)
                .action(ArgAction::SetTrue)
                .help("Check the config (file and flags) and exit: 0 when it is valid."),
        )
        .arg(
            Arg::new(CONFIG_EXPAND_ENV)
                .long(CONFIG_EXPAND_ENV)
                .action(ArgAction::SetTrue)
                .help("Replace ${VAR} and ${VAR:default} in the config file with environment variables."),
        )
        .arg(Arg::new(VERSION).long(VERSION).action(ArgAction::SetTrue).help("Print the version and exit."));
    for field in FIELD_DOCS {
        let dashed = field.path.replace('_', "-");
        let mut arg = Arg::new(field.path)
            .long(field.path)
            .value_name(field.kind.value_name())
            .help(format!(
                "{} (default: {})",
                field.help,
                field.default_text()
            ));
        if dashed != field.path {
            arg = arg.alias(dashed);
        }
        if field.kind == crate::config::FieldKind::Bool {
            arg = arg
                .num_args(0..=1)
                .default_missing_value("true")
                .require_equals(true);
        }
        cmd = cmd.arg(arg);
    }
    cmd
}

/// clap's text with the flags written as the usage line and Mimir write them:
/// one dash (two are accepted as well).
fn one_dash(text: &str) -> String {
    text.lines()
        .map(|line| {
            let body = line.trim_start();
            let indent = &line[..line.len() - body.len()];
            let body = body
                .strip_prefix("--")
                .map_or_else(|| body.to_string(), |rest| format!("-{rest}"));
            format!("{indent}{}", body.replace("'--", "'-"))
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// An unknown flag's error, naming it as the user typed it (clap sees the
/// two-dash form) with clap's suggestion, if it has one.
fn unknown_flag(e: &clap::Error, typed: &[String]) -> ConfigError {
    use clap::error::ContextKind;
    let reported = e
        .get(ContextKind::InvalidArg)
        .map(|v| v.to_string())
        .unwrap_or_default();
    let name = reported.trim_start_matches('-').to_string();
    let as_typed = typed
        .iter()
        .find(|t| {
            let t = t.trim_start_matches('-');
            t == name
                || t.strip_prefix(name.as_str())
                    .is_some_and(|r| r.starts_with('='))
        })
        .cloned()
        .unwrap_or(reported);
    let suggestion = e
        .get(ContextKind::SuggestedArg)
        .map(|v| format!("; did you mean -{}?", v.to_string().trim_start_matches('-')))
        .unwrap_or_default();
    let flag = as_typed
        .split_once('=')
        .map_or(as_typed.as_str(), |(flag, _)| flag);
    ConfigError::new(
        flag,
        format!("unknown flag{suggestion} (strata -help lists every flag)"),
    )
}

/// Any other error of clap's, about the flag it names.
fn flag_error(e: &clap::Error) -> ConfigError {
    let flag = e
        .get(clap::error::ContextKind::InvalidArg)
        .map(|v| one_dash(&v.to_string()).trim().to_string())
        .unwrap_or_else(|| "command line".to_string());
    ConfigError::new(flag, one_dash(&e.to_string()).trim())
}

pub(crate) fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Invocation, ConfigError> {
    let args: Vec<OsString> = args.into_iter().collect();
    let typed: Vec<String> = args
        .iter()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let matches = match command().try_get_matches_from(normalise_dashes(args)) {
        Ok(m) => m,
        Err(e) if matches!(e.kind(), clap::error::ErrorKind::DisplayHelp) => {
            return Ok(Invocation::Print(one_dash(&e.to_string())))
        }
        Err(e) if matches!(e.kind(), clap::error::ErrorKind::UnknownArgument) => {
            return Err(unknown_flag(&e, &typed))
        }
        Err(e) => return Err(flag_error(&e)),
    };
    if matches.get_flag(VERSION) {
        return Ok(Invocation::Print(format!(
            "strata, version {}\n",
            env!("CARGO_PKG_VERSION")
        )));
    }
    let mut tree = match matches.get_one::<String>(CONFIG_FILE) {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| ConfigError::new(CONFIG_FILE, format!("cannot read {path}: {e}")))?;
            let text = if matches.get_flag(CONFIG_EXPAND_ENV) {
                crate::config::expand_env(&text)
            } else {
                text
            };
            crate::config::parse_yaml_tree(&text, path)?
        }
        None => Value::Mapping(Default::default()),
    };
    for field in FIELD_DOCS {
        if let Some(raw) = matches.get_one::<String>(field.path) {
            crate::config::set_path(&mut tree, field, raw)?;
        }
    }
    let config = Config::from_tree(tree)?;
    if matches.get_flag(CONFIG_VERIFY) {
        Ok(Invocation::Verify(Box::new(config)))
    } else {
        Ok(Invocation::Run(Box::new(config)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_writes_flags_with_one_dash() {
        let Ok(Invocation::Print(text)) = run(&["-help"]) else {
            panic!("help")
        };
        assert!(text.contains("\n      -config.file <path>"), "{text}");
        assert!(
            text.contains("\n      -querier.timeout <duration>"),
            "{text}"
        );
        assert!(!text.contains("\n      --"), "{text}");
    }

    #[test]
    fn unknown_flags_are_named_as_typed() {
        let err = run(&["-querier.timeot=1s"]).unwrap_err().to_string();
        assert!(
            err.starts_with("-querier.timeot: unknown flag; did you mean -querier.timeout?"),
            "{err}"
        );
        let err = run(&["--blah"]).unwrap_err().to_string();
        assert!(err.starts_with("--blah: unknown flag"), "{err}");
    }

    fn run(args: &[&str]) -> Result<Invocation, ConfigError> {
        parse(
            std::iter::once("strata")
                .chain(args.iter().copied())
                .map(OsString::from),
        )
    }

    fn config(args: &[&str]) -> Config {
        match run(args) {
            Ok(Invocation::Run(c)) => *c,
            other => panic!("expected a config, got {other:?}"),
        }
    }

    #[test]
    fn single_and_double_dash_and_dashed_names() {
        assert_eq!(
            config(&["-server.http_listen_port=1234"])
                .server
                .http_listen_port,
            1234
        );
        assert_eq!(
            config(&["--server.http_listen_port=1235"])
                .server
                .http_listen_port,
            1235
        );
        assert_eq!(
            config(&["-server.http-listen-port", "1236"])
                .server
                .http_listen_port,
            1236
        );
        assert_eq!(config(&["-target=querier"]).target.to_string(), "querier");
    }

    #[test]
    fn bool_flags_without_value_mean_true() {
        assert!(!config(&["-multitenancy_enabled=false"]).multitenancy_enabled);
        assert!(config(&["-multitenancy_enabled"]).multitenancy_enabled);
    }

    #[test]
    fn flags_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(
            &path,
            "server:\n  http_listen_port: 1\n  grpc_listen_port: 2\n",
        )
        .unwrap();
        let c = config(&[
            &format!("-config.file={}", path.display()),
            "-server.grpc_listen_port=3",
        ]);
        assert_eq!(
            (c.server.http_listen_port, c.server.grpc_listen_port),
            (1, 3)
        );
    }

    #[test]
    fn unknown_key_in_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, "server:\n  http_listen_prot: 1\n").unwrap();
        let err = run(&[&format!("-config.file={}", path.display())])
            .unwrap_err()
            .to_string();
        assert!(err.contains("http_listen_prot"), "{err}");
    }

    #[test]
    fn bad_values_name_the_flag() {
        let err = run(&["-server.http_listen_port=abc"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("server.http_listen_port"), "{err}");
        let err = run(&["-no.such.flag=1"]).unwrap_err().to_string();
        assert!(err.contains("no.such.flag"), "{err}");
        let err = run(&["-target=nope"]).unwrap_err().to_string();
        assert!(err.contains("nope"), "{err}");
    }

    #[test]
    fn help_lists_every_key() {
        let Ok(Invocation::Print(text)) = run(&["-help"]) else {
            panic!("no help")
        };
        for field in FIELD_DOCS {
            assert!(text.contains(field.path), "help lacks {}", field.path);
        }
    }
}
