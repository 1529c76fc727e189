//! Generates the Open Inference Protocol's gRPC messages and service trait from
//! `src/grpc/inference.proto`, compiled by protox (pure Rust: no protoc needed).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "src/grpc/inference.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["src/grpc"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .bytes(".")
        .compile_fds(descriptors)?;
    Ok(())
}
