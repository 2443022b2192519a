//! Operator fusion: a run of CPU work linked one to one becomes one CPU job per item.
//!
//! When stage B reads only A and nothing else reads A, a channel between them buys nothing:
//! every item goes from A to B anyway. What it costs is memory, because a finished output waits
//! in the channel (or for a pool thread) while new items start. Fused, an item goes through A
//! and B in one job on one pool thread, and A's output is dropped as soon as B is done with
//! it: `upscale -> threshold` never holds more 8.4 MB gray pages than the chain has items in
//! progress, whatever the batch size. A source's load (reading and decoding a file) is CPU
//! work too: fused, a decoded input exists only inside the job that shrinks it.

/// What a component does with each item, as far as fusion cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Work {
    /// A source: it loads each item, and may head a chain.
    Load,
    /// A CPU stage: it may head a chain or join one.
    Compute,
    /// An I/O stage or a sink: never fused.
    Other,
}

/// The components of a pipeline grouped into the units the runtime runs: a chain of fused
/// components (in order, the head first), or a single component. Every component is in
/// exactly one unit; units come in pipeline order of their heads.
///
/// `inputs[i]` are component `i`'s inputs (given before it). A CPU stage joins its input's
/// chain when it reads nothing else, and that input is a source or a CPU stage that feeds
/// nothing else.
pub fn units(inputs: &[&[usize]], work: &[Work]) -> Vec<Vec<usize>> {
    let mut consumers = vec![0usize; inputs.len()];
    for &input in inputs.iter().copied().flatten() {
        consumers[input] += 1;
    }
    let mut unit_of: Vec<usize> = Vec::with_capacity(inputs.len());
    let mut units: Vec<Vec<usize>> = Vec::new();
    for (index, component_inputs) in inputs.iter().enumerate() {
        match **component_inputs {
            [input]
                if work[index] == Work::Compute && work[input] != Work::Other && consumers[input] == 1 =>
            {
                let unit = unit_of[input];
                units[unit].push(index);
                unit_of.push(unit);
            }
            _ => {
                unit_of.push(units.len());
                units.push(vec![index]);
            }
        }
    }
    units
}

#[cfg(test)]
mod tests {
    use super::*;

    use Work::{Compute, Load, Other};

    #[test]
    fn a_source_and_its_one_to_one_run_of_cpu_stages_are_one_unit() {
        // source -> gray -> print -> lineart -> {thumb, disk}, thumb -> disk
        let inputs: [&[usize]; 6] = [&[], &[0], &[1], &[2], &[3], &[3, 4]];
        let work = [Load, Compute, Compute, Compute, Compute, Other];
        assert_eq!(units(&inputs, &work), [vec![0, 1, 2, 3], vec![4], vec![5]]);
    }

    #[test]
    fn io_stages_fan_out_and_joins_break_a_chain() {
        // source -> safety -> fal -> gray -> {a, b}; a -> c; a sink reads b and c, another the source.
        let inputs: [&[usize]; 9] = [&[], &[0], &[1], &[2], &[3], &[3], &[4], &[5, 6], &[0]];
        let work = [Load, Compute, Other, Compute, Compute, Compute, Compute, Other, Other];
        assert_eq!(
            units(&inputs, &work),
            [vec![0], vec![1], vec![2], vec![3], vec![4, 6], vec![5], vec![7], vec![8]]
        );
    }

    #[test]
    fn a_source_feeding_one_cpu_stage_loads_in_its_jobs() {
        // prompts -> safety -> fal -> sink
        let inputs: [&[usize]; 4] = [&[], &[0], &[1], &[2]];
        assert_eq!(units(&inputs, &[Load, Compute, Other, Other]), [vec![0, 1], vec![2], vec![3]]);
    }
}
