use super::*;
use albatross_rng::SplitMix64;

fn epoch_order(sampler: &EpochSampler, epoch: u64) -> Vec<u64> {
    sampler.ids(epoch, 0..sampler.num_samples()).expect("whole epoch")
}

#[test]
fn every_epoch_is_a_permutation_and_a_pure_function_of_seed_and_epoch() {
    for n in [1u64, 2, 3, 5, 16, 17, 100, 1000, 4097] {
        let sampler = EpochSampler::new(n, 42).expect("sampler");
        let order = epoch_order(&sampler, 3);
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..n).collect::<Vec<_>>(), "n = {n}");
        let again = EpochSampler::new(n, 42).expect("sampler");
        assert_eq!(order, epoch_order(&again, 3));
    }
    let sampler = EpochSampler::new(1000, 42).expect("sampler");
    assert_ne!(epoch_order(&sampler, 0), epoch_order(&sampler, 1));
    let other_seed = EpochSampler::new(1000, 43).expect("sampler");
    assert_ne!(epoch_order(&sampler, 0), epoch_order(&other_seed, 0));
    // Shuffled, not the identity or close to it.
    let fixed =
        epoch_order(&sampler, 0).iter().enumerate().filter(|(i, id)| *i as u64 == **id).count();
    assert!(fixed < 10, "{fixed} fixed points");
}

#[test]
fn any_partition_of_an_epoch_covers_every_sample_once() {
    let n = 777;
    let sampler = EpochSampler::new(n, 7).expect("sampler");
    let mut rng = SplitMix64::from_parts(&[99]);
    for trial in 0..20 {
        let mut cuts: Vec<u64> = (0..rng.below(30)).map(|_| rng.below(n + 1)).collect();
        cuts.extend([0, n]);
        cuts.sort_unstable();
        let mut seen = vec![0u8; n as usize];
        for pair in cuts.windows(2) {
            for id in sampler.ids(trial, pair[0]..pair[1]).expect("in range") {
                seen[id as usize] += 1;
            }
        }
        assert!(seen.iter().all(|c| *c == 1), "trial {trial}");
    }
}

#[test]
fn out_of_range_requests_are_errors() {
    assert!(EpochSampler::new(0, 1).is_err());
    let sampler = EpochSampler::new(5, 1).expect("sampler");
    assert!(sampler.sample_at(0, 5).is_err());
    assert!(sampler.ids(0, 2..6).is_err());
}
