//! Checks on the dependency graph: every `needs` names a unit, and there are no cycles.

use std::collections::HashMap;

use super::error::Diagnostic;
use super::spec::UnitSpec;

/// Errors for references to unknown units and for each dependency cycle.
pub(super) fn check(units: &[UnitSpec]) -> Vec<Diagnostic> {
    let index: HashMap<&str, usize> = units
        .iter()
        .enumerate()
        .map(|(i, u)| (u.name.as_str(), i))
        .collect();
    let mut errors = Vec::new();
    for unit in units {
        for need in &unit.needs {
            if !index.contains_key(need.as_str()) {
                errors.push(Diagnostic {
                    pos: unit.pos,
                    message: format!(
                        "`{}` needs `{need}`, which is not a service or task",
                        unit.name
                    ),
                });
            }
        }
    }
    if !errors.is_empty() {
        return errors;
    }

    // Depth-first search with three colours; a grey node reached again closes a cycle.
    #[derive(Clone, Copy, PartialEq)]
    enum Colour {
        White,
        Grey,
        Black,
    }
    fn visit(
        i: usize,
        units: &[UnitSpec],
        index: &HashMap<&str, usize>,
        colour: &mut [Colour],
        path: &mut Vec<usize>,
        errors: &mut Vec<Diagnostic>,
    ) {
        colour[i] = Colour::Grey;
        path.push(i);
        for need in &units[i].needs {
            let j = index[need.as_str()];
            match colour[j] {
                Colour::White => visit(j, units, index, colour, path, errors),
                Colour::Grey => {
                    let start = path.iter().position(|&k| k == j).unwrap_or(0);
                    let mut names: Vec<&str> = path[start..]
                        .iter()
                        .map(|&k| units[k].name.as_str())
                        .collect();
                    names.push(units[j].name.as_str());
                    errors.push(Diagnostic {
                        pos: units[j].pos,
                        message: format!("cyclic dependency: {}", names.join(" → ")),
                    });
                }
                Colour::Black => {}
            }
        }
        path.pop();
        colour[i] = Colour::Black;
    }

    let mut colour = vec![Colour::White; units.len()];
    for i in 0..units.len() {
        if colour[i] == Colour::White {
            visit(i, units, &index, &mut colour, &mut Vec::new(), &mut errors);
        }
    }
    errors
}
