//! `reload`: the units a new config asks for, reconciled with the running ones. A unit
//! whose definition is unchanged keeps running; a changed one is replaced (after its
//! process has exited); a removed one is stopped and then dropped.

use std::collections::HashMap;

use agentbox_protocol::ctl::{ReloadReport, UnitState};

use super::unit::{AfterExit, Unit};
use crate::config::UnitSpec;
use crate::paths::Paths;

/// The next unit list for `specs` (in that order; units still stopping after their removal
/// or change come along), recording what was added, changed and removed in `report`.
pub(super) fn reconcile(
    units: Vec<Unit>,
    specs: Vec<UnitSpec>,
    paths: &Paths,
    log_max: u64,
    report: &mut ReloadReport,
) -> Vec<Unit> {
    let mut old: HashMap<String, Unit> = units
        .into_iter()
        .map(|u| (u.spec.name.clone(), u))
        .collect();
    let mut next: Vec<Unit> = Vec::new();
    for spec in specs {
        match old.remove(&spec.name) {
            None => {
                report.added.push(spec.name.clone());
                next.push(Unit::new(spec, paths, log_max));
            }
            Some(mut unit) if same_definition(&unit.spec, &spec) => {
                unit.spec.pos = spec.pos;
                if matches!(unit.after_exit, AfterExit::Remove) {
                    unit.after_exit = AfterExit::Replace(Box::new(spec));
                } else if unit.state == UnitState::Skipped {
                    unit.state = UnitState::Pending;
                    unit.wanted = true;
                    unit.detail = None;
                }
                next.push(unit);
            }
            Some(mut unit) => {
                report.changed.push(spec.name.clone());
                if unit.alive() {
                    unit.after_exit = AfterExit::Replace(Box::new(spec));
                    unit.terminate();
                    next.push(unit);
                } else {
                    unit.gen += 1;
                    let waiters = std::mem::take(&mut unit.waiters);
                    let mut fresh = Unit::new(spec, paths, log_max);
                    fresh.waiters = waiters;
                    next.push(fresh);
                }
            }
        }
    }
    let mut removed: Vec<Unit> = old.into_values().collect();
    removed.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
    for mut unit in removed {
        report.removed.push(unit.spec.name.clone());
        unit.gen += u64::from(!unit.alive());
        unit.wanted = false;
        if unit.alive() {
            unit.after_exit = AfterExit::Remove;
            unit.terminate();
            next.push(unit);
        } else {
            unit.fire_waiters();
        }
    }
    next
}

/// Whether two specs define the same unit (positions aside).
fn same_definition(a: &UnitSpec, b: &UnitSpec) -> bool {
    let mut b = b.clone();
    b.pos = a.pos;
    *a == b
}
