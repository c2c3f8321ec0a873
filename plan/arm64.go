package plan

import "fmt"

func buildARM64(in *Inputs) (*Plan, error) {
	return nil, fmt.Errorf("%w: arm64 planning is not built yet", ErrInput)
}

func checkARM64Kernel(in *Inputs) error {
	_, err := buildARM64(in)
	return err
}
