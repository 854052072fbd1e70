//! `memspace bench`: memspace against its baselines, side by side, on this machine (the
//! harness is the `memspace-bench` crate).

use crate::cli::BenchArgs;

pub(crate) fn run(args: &BenchArgs) -> anyhow::Result<()> {
    memspace_bench::run(&memspace_bench::Options {
        quick: args.quick,
        json: args.json,
        plot: args.plot.clone(),
        no_python: args.no_python,
        redis: args.redis.clone(),
        redis_cluster: args.redis_cluster.clone(),
        growth: args.growth,
    })
}
