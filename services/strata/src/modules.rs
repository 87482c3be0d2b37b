//! The modules of a process and what each depends on (Mimir's `modules.go`
//! deps map): the components `-target` names, and the modules they need that
//! no target names on its own (the servers, the runtime config).

use std::fmt;

use strata_service::ModuleGraph;

/// Everything a process can run. The first five can be named by `-target`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Module {
    Distributor,
    Ingester,
    Querier,
    StoreGateway,
    Compactor,
    /// The per-tenant overrides file, loaded at start and re-read.
    RuntimeConfig,
    HttpServer,
    GrpcServer,
}

impl Module {
    /// What `-target=all` runs, in the order its start prefers.
    pub const ALL_TARGET: [Module; 5] = [
        Module::Ingester,
        Module::StoreGateway,
        Module::Distributor,
        Module::Querier,
        Module::Compactor,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Module::Distributor => "distributor",
            Module::Ingester => "ingester",
            Module::Querier => "querier",
            Module::StoreGateway => "store-gateway",
            Module::Compactor => "compactor",
            Module::RuntimeConfig => "runtime-config",
            Module::HttpServer => "http-server",
            Module::GrpcServer => "grpc-server",
        }
    }

    /// The modules a `-target` value names (`all`, or comma-separated names).
    pub fn parse_target(target: &str) -> Result<Vec<Module>, String> {
        let mut modules = Vec::new();
        for name in target.split(',').map(str::trim) {
            let named: &[Module] = match name {
                "all" => &Module::ALL_TARGET,
                "distributor" => &[Module::Distributor],
                "ingester" => &[Module::Ingester],
                "querier" => &[Module::Querier],
                "store-gateway" => &[Module::StoreGateway],
                "compactor" => &[Module::Compactor],
                other => return Err(format!("unknown target {other:?}")),
            };
            for m in named {
                if !modules.contains(m) {
                    modules.push(*m);
                }
            }
        }
        Ok(modules)
    }
}

impl fmt::Display for Module {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Every module after the ones it needs: the servers first (so `/ready` can
/// answer 503 during a long start, and they stop last), then the overrides.
pub fn graph() -> ModuleGraph<Module> {
    use Module::*;
    ModuleGraph::new(&[
        (HttpServer, &[]),
        (GrpcServer, &[]),
        (RuntimeConfig, &[]),
        (Ingester, &[HttpServer, GrpcServer, RuntimeConfig]),
        (StoreGateway, &[HttpServer, GrpcServer]),
        (Distributor, &[HttpServer, RuntimeConfig]),
        (Querier, &[HttpServer, RuntimeConfig]),
        (Compactor, &[HttpServer, RuntimeConfig]),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_target_has_an_order_with_the_servers_first() {
        for target in [
            "all",
            "distributor",
            "ingester",
            "querier",
            "store-gateway",
            "compactor",
        ] {
            let modules = Module::parse_target(target).unwrap();
            let order = graph().start_order(&modules).unwrap();
            assert_eq!(order[0], Module::HttpServer, "{target}: {order:?}");
            for m in modules {
                assert!(order.contains(&m), "{target}: {m} missing from {order:?}");
            }
        }
    }

    #[test]
    fn all_starts_the_ingester_before_the_components_that_can_fail_after_it() {
        let order = graph().start_order(&Module::ALL_TARGET).unwrap();
        let at = |m| order.iter().position(|x| *x == m).unwrap();
        assert!(at(Module::Ingester) < at(Module::Compactor));
        assert!(at(Module::RuntimeConfig) < at(Module::Ingester));
    }

    #[test]
    fn unknown_targets_are_named() {
        assert_eq!(
            Module::parse_target("ingester,rulr"),
            Err("unknown target \"rulr\"".to_string())
        );
    }
}
