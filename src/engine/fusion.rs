//! Operator fusion: a run of CPU stages linked one to one becomes one CPU job per item.
//!
//! When stage B reads only stage A and nothing else reads A, a channel between them buys
//! nothing: every item goes from A to B anyway. What it costs is memory, because a finished
//! output waits in the channel (or for a pool thread) while new items start. Fused, an item
//! goes through A and B in one job on one pool thread, and A's output is dropped as soon as B
//! is done with it: `upscale -> threshold` never holds more 8.4 MB gray pages than the pool
//! has threads, whatever the batch size.

/// The components of a pipeline grouped into the units the runtime starts a task for: a
/// chain of fused CPU stages (in order, the head first), or a single component. Every
/// component is in exactly one unit; units come in pipeline order of their heads.
///
/// `inputs[i]` are component `i`'s inputs (given before it) and `cpu[i]` says whether it is a
/// CPU stage. A CPU stage joins its input's chain when that input is a CPU stage that feeds
/// nothing else and it reads nothing else.
pub fn units(inputs: &[&[usize]], cpu: &[bool]) -> Vec<Vec<usize>> {
    let mut consumers = vec![0usize; inputs.len()];
    for &input in inputs.iter().copied().flatten() {
        consumers[input] += 1;
    }
    let mut unit_of: Vec<usize> = Vec::with_capacity(inputs.len());
    let mut units: Vec<Vec<usize>> = Vec::new();
    for (index, component_inputs) in inputs.iter().enumerate() {
        match **component_inputs {
            [input] if cpu[index] && cpu[input] && consumers[input] == 1 => {
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

    #[test]
    fn a_one_to_one_run_of_cpu_stages_is_one_unit() {
        // source -> gray -> print -> lineart -> {thumb, disk}, thumb -> disk
        let inputs: [&[usize]; 6] = [&[], &[0], &[1], &[2], &[3], &[3, 4]];
        let cpu = [false, true, true, true, true, false];
        assert_eq!(units(&inputs, &cpu), [vec![0], vec![1, 2, 3], vec![4], vec![5]]);
    }

    #[test]
    fn io_stages_fan_out_and_joins_break_a_chain() {
        // source -> safety -> fal -> gray -> {a, b}; a -> c; sink reads b and c.
        let inputs: [&[usize]; 8] = [&[], &[0], &[1], &[2], &[3], &[3], &[4], &[5, 6]];
        let cpu = [false, true, false, true, true, true, true, false];
        assert_eq!(units(&inputs, &cpu), [vec![0], vec![1], vec![2], vec![3], vec![4, 6], vec![5], vec![7]]);
    }
}
