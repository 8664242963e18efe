package jobs

import (
	"context"
	"errors"
)

// runCustomize runs a customize job. Placeholder: customize jobs are
// written on top of the runner separately.
func runCustomize(ctx context.Context, j *jobRun) error {
	return errors.New("customize jobs are not implemented yet")
}
