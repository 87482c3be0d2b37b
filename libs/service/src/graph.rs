//! The dependency table of a process's modules (Mimir's `deps` map in
//! `pkg/mimir/modules.go`): which modules a target needs, and in which order
//! they start.

use std::fmt;

/// Why a start order cannot be given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DependencyError {
    #[error("module {0} is not in the dependency table")]
    Unknown(String),
    #[error("the modules depend on each other in a cycle: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
}

/// Each module with the modules it depends on.
#[derive(Debug, Clone)]
pub struct ModuleGraph<M> {
    table: Vec<(M, Vec<M>)>,
}

impl<M: Copy + Eq + fmt::Display> ModuleGraph<M> {
    pub fn new(table: &[(M, &[M])]) -> Self {
        Self {
            table: table.iter().map(|(m, deps)| (*m, deps.to_vec())).collect(),
        }
    }

    fn deps_of(&self, module: M) -> Result<&[M], DependencyError> {
        self.table
            .iter()
            .find(|(m, _)| *m == module)
            .map(|(_, deps)| deps.as_slice())
            .ok_or_else(|| DependencyError::Unknown(module.to_string()))
    }

    /// `targets` and every module they depend on, transitively, each after
    /// its dependencies; otherwise in the order `targets` and the table give.
    pub fn start_order(&self, targets: &[M]) -> Result<Vec<M>, DependencyError> {
        let mut order = Vec::new();
        let mut path = Vec::new();
        for &target in targets {
            self.visit(target, &mut path, &mut order)?;
        }
        Ok(order)
    }

    /// Depth first: a module is placed once all it depends on is placed.
    /// `path` holds the modules being placed, to name a cycle.
    fn visit(
        &self,
        module: M,
        path: &mut Vec<M>,
        order: &mut Vec<M>,
    ) -> Result<(), DependencyError> {
        if order.contains(&module) {
            return Ok(());
        }
        if let Some(at) = path.iter().position(|m| *m == module) {
            let mut cycle: Vec<String> = path[at..].iter().map(M::to_string).collect();
            cycle.push(module.to_string());
            return Err(DependencyError::Cycle(cycle));
        }
        path.push(module);
        for &dep in self.deps_of(module)? {
            self.visit(dep, path, order)?;
        }
        path.pop();
        order.push(module);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum M {
        Server,
        Kv,
        Ring,
        Ingester,
        Distributor,
        Lonely,
    }

    impl fmt::Display for M {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            fmt::Debug::fmt(self, f)
        }
    }

    fn graph() -> ModuleGraph<M> {
        ModuleGraph::new(&[
            (M::Server, &[]),
            (M::Kv, &[]),
            (M::Ring, &[M::Kv]),
            (M::Ingester, &[M::Server, M::Kv]),
            (M::Distributor, &[M::Server, M::Ring]),
        ])
    }

    #[test]
    fn dependencies_start_first_and_once() {
        let order = graph().start_order(&[M::Distributor, M::Ingester]).unwrap();
        assert_eq!(
            order,
            vec![M::Server, M::Kv, M::Ring, M::Distributor, M::Ingester]
        );
    }

    #[test]
    fn a_target_pulls_in_only_what_it_needs() {
        assert_eq!(
            graph().start_order(&[M::Ingester]).unwrap(),
            vec![M::Server, M::Kv, M::Ingester]
        );
    }

    #[test]
    fn a_module_missing_from_the_table_is_named() {
        assert_eq!(
            graph().start_order(&[M::Lonely]),
            Err(DependencyError::Unknown("Lonely".into()))
        );
    }

    #[test]
    fn a_cycle_is_refused_and_named() {
        let g = ModuleGraph::new(&[
            (M::Server, &[M::Ring]),
            (M::Ring, &[M::Kv]),
            (M::Kv, &[M::Server]),
        ]);
        let err = g.start_order(&[M::Server]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the modules depend on each other in a cycle: Server -> Ring -> Kv -> Server"
        );
    }
}
