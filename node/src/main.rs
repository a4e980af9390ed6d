use std::process::ExitCode;

use fjord_node::alloc_guard::GuardedAllocator;

#[global_allocator]
static ALLOCATOR: GuardedAllocator = GuardedAllocator;

fn main() -> ExitCode {
    fjord_node::cli::main()
}
