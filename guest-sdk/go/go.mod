module github.com/wasmgate/wasmgate/guest-sdk/go

go 1.24
