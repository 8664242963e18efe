package main

import "errors"

func builderCmd(args []string) error { return errors.New("builder: not yet") }
