// Version of the C ABI of the kernels in this folder; gaunt_md/native/build.py refuses a
// library whose version differs from its own ABI_VERSION (stale cache, edited sources).

extern "C" int gaunt_kernels_abi_version() { return 16; }
