fn main() {
    std::process::exit(grab_bench::cli::main());
}
