# Sourced by the scripts that build the release binary (install-server.sh, the benchmarks, the
# kill campaign): one set of flags, so that they share one build in .build/release.
#
# Release binaries are built without Swift's dynamic exclusivity checks
# (-enforce-exclusivity=unchecked, for Parley and its dependencies): in a checked build every
# access to a class's stored `var` that the compiler cannot prove exclusive calls into the
# runtime (swift_beginAccess / swift_endAccess and a thread-local access set), among them the
# ones inlined from SwiftNIO's ByteBuffer into every frame encoded and decoded. Measured on the
# message path (2026-12-05, interleaved pairs, README "Performance"): about 10 % less server CPU per
# message at saturation. Static exclusivity checking is unchanged, and debug builds (the test
# suite, the demo) keep the dynamic checks, so an overlapping access in any tested path still
# traps there.
#
#   parley_release_build [swift build args...]    # e.g. --product parley
#   parley_release_bin_path                       # the directory of the built products
#   parley_build CONFIGURATION [swift build args...]  # release as above, debug as it is
PARLEY_RELEASE_FLAGS=(-c release -Xswiftc -enforce-exclusivity=unchecked)
parley_release_build() { swift build "${PARLEY_RELEASE_FLAGS[@]}" "$@"; }
parley_release_bin_path() { swift build "${PARLEY_RELEASE_FLAGS[@]}" --show-bin-path; }
parley_build() {
    local configuration=$1
    shift
    if [ "$configuration" = release ]; then parley_release_build "$@"; else swift build -c "$configuration" "$@"; fi
}
