//! Every WGSL kernel parses and validates with naga (the same front end wgpu uses), defines the
//! entry points the crate binds, and documents each of its bindings in its header comment.

#![allow(clippy::panic)]

use cu_gpu::kernels::{self, KernelSource};

fn validate(k: &KernelSource) -> naga::Module {
    let module = naga::front::wgsl::parse_str(k.source)
        .unwrap_or_else(|e| panic!("{}: {}", k.file, e.emit_to_string(k.source)));
    // Default capabilities: no optional GPU features are needed by any kernel.
    let mut validator = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::default(),
    );
    validator
        .validate(&module)
        .unwrap_or_else(|e| panic!("{}: {}", k.file, e.emit_to_string(k.source)));
    module
}

#[test]
fn every_kernel_validates_with_naga() {
    for k in kernels::ALL {
        validate(&k);
    }
}

#[test]
fn every_entry_point_exists_and_is_a_compute_shader() {
    for k in kernels::ALL {
        let module = validate(&k);
        for name in k.entry_points {
            let ep = module.entry_points.iter().find(|e| e.name == *name);
            let ep = ep.unwrap_or_else(|| panic!("{}: no entry point {name}", k.file));
            assert_eq!(ep.stage, naga::ShaderStage::Compute, "{}: {name}", k.file);
        }
        assert_eq!(
            module.entry_points.len(),
            k.entry_points.len(),
            "{}: undeclared entry points",
            k.file
        );
    }
}

#[test]
fn every_binding_is_documented_in_the_header() {
    for k in kernels::ALL {
        let module = validate(&k);
        let header: String = k
            .source
            .lines()
            .take_while(|l| l.starts_with("//") || l.trim().is_empty())
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            header.contains("Bindings"),
            "{}: header lacks a Bindings section",
            k.file
        );
        assert!(
            header.contains("Semantics"),
            "{}: header lacks a Semantics section",
            k.file
        );
        let mut bindings = 0;
        for (_, var) in module.global_variables.iter() {
            if let Some(b) = &var.binding {
                bindings += 1;
                assert_eq!(b.group, 0, "{}: everything binds in group 0", k.file);
                let name = var.name.as_deref().unwrap_or("");
                let line = format!("@binding({})", b.binding);
                let doc = header
                    .lines()
                    .find(|l| l.contains(&line))
                    .unwrap_or_else(|| panic!("{}: {line} ({name}) is not documented", k.file));
                assert!(
                    doc.contains(name),
                    "{}: the header line for {line} does not name {name}: {doc}",
                    k.file
                );
            }
        }
        assert!(
            bindings >= 2,
            "{}: expected at least a uniform and a storage binding",
            k.file
        );
    }
}
