module echo-go

go 1.24

require github.com/wasmgate/wasmgate/guest-sdk/go v0.0.0

replace github.com/wasmgate/wasmgate/guest-sdk/go => ../../guest-sdk/go
