# node-gyp build of the addon: the same sources as CMakeLists.txt (cpp/sources.txt) and libtorch
# located by the same script (scripts/libtorch.js: LIBTORCH, then the system's, then Python's
# torch). Used by `node-gyp rebuild`, by prebuildify (npm run prebuilds) and by
# `npm install --build-from-source` where cmake-js is not installed. No precompiled header here,
# so a clean build takes ~3x longer than cmake-js's.
{
  "targets": [
    {
      "target_name": "inp_former",
      "sources": ["<!@(node scripts/libtorch.js sources)"],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "cpp",
        "<!@(node scripts/libtorch.js include)"
      ],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      # libtorch needs RTTI and exceptions, which node's common.gypi turns off.
      "cflags!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17", "-std=gnu++1y"],
      "cflags_cc": [
        "-std=c++17", "-fexceptions", "-frtti", "-O2", "-fvisibility=hidden",
        "-fvisibility-inlines-hidden", "-Wall", "-Wno-unused-parameter",
        "<!@(node scripts/libtorch.js cxxflags)"
      ],
      "ldflags": ["-Wl,--as-needed"],
      "libraries": ["<!@(node scripts/libtorch.js libs)"],
      # Debian's node-gyp links every addon to libnode.so.N (its node is a shared library). An
      # N-API addon takes napi_* from whichever node loads it: never tie it to one libnode.
      "libraries!": ["-lnode"]
    }
  ]
}
