//go:build !linux

package upstream

func setBindToDevice(int, string) error { return nil }

func setReusePort(int) error { return nil }

func setMulticastAll(int, bool) error { return nil }
