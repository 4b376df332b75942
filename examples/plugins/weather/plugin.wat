;; The weather plugin: one tool, get_weather, written by hand in WebAssembly text.
;; It follows the guest ABI of docs/plugins.md: it exports its memory, an allocator,
;; get_spec (its tools as JSON) and execute (one call: a JSON request in, a JSON answer out).
;; Build plugin.wasm from it with:
;;   .venv/bin/python -c "import wasmtime; open('plugin.wasm', 'wb').write(wasmtime.wat2wasm(open('plugin.wat').read()))"
(module
  (memory (export "memory") 1)

  ;; get_spec's answer: 255 bytes at address 0.
  (data (i32.const 0) "{\"tools\":[{\"name\":\"get_weather\",\"description\":\"Today's weather in a city (a fixed, offline forecast).\",\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":100}},\"required\":[\"city\"],\"additionalProperties\":false}}]}")
  ;; execute's answer is this head (59 bytes), the request as it came, then "}}".
  (data (i32.const 512) "{\"output\":{\"forecast\":\"sunny\",\"temperature_c\":21,\"request\":")
  (data (i32.const 600) "}}")

  ;; The one buffer the host writes a request into; it is valid until the next call.
  (global $heap i32 (i32.const 1024))

  ;; Grow the memory so that it reaches $end, or trap when the host's limit refuses.
  (func $reserve (param $end i32)
    (local $pages i32)
    (local.set $pages
      (i32.sub (i32.div_u (i32.add (local.get $end) (i32.const 65535)) (i32.const 65536)) (memory.size)))
    (if (i32.gt_s (local.get $pages) (i32.const 0))
      (then
        (if (i32.eq (memory.grow (local.get $pages)) (i32.const -1))
          (then unreachable)))))

  ;; Room for the request and, right after it, the answer (which is the request plus 61 bytes).
  (func (export "alloc") (param $len i32) (result i32)
    (call $reserve
      (i32.add (i32.add (global.get $heap) (i32.const 64)) (i32.shl (local.get $len) (i32.const 1))))
    (global.get $heap))

  ;; An answer is (address << 32) | length.
  (func (export "get_spec") (result i64)
    (i64.const 255))

  (func (export "execute") (param $request i32) (param $len i32) (result i64)
    (local $out i32)
    (local.set $out (i32.add (local.get $request) (local.get $len)))
    (memory.copy (local.get $out) (i32.const 512) (i32.const 59))
    (memory.copy (i32.add (local.get $out) (i32.const 59)) (local.get $request) (local.get $len))
    (memory.copy (i32.add (i32.add (local.get $out) (i32.const 59)) (local.get $len)) (i32.const 600) (i32.const 2))
    (i64.or
      (i64.shl (i64.extend_i32_u (local.get $out)) (i64.const 32))
      (i64.extend_i32_u (i32.add (local.get $len) (i32.const 61))))))
