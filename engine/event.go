package engine

import "time"

// Status is the state a step reports in an Event.
type Status string

// Statuses of steps. Log events carry one line of a step's output.
const (
	StatusPlanned Status = "planned"
	StatusCached  Status = "cached"
	StatusStarted Status = "started"
	StatusDone    Status = "done"
	StatusFailed  Status = "failed"
	StatusSkipped Status = "skipped"
	StatusLog     Status = "log"
	// StatusCancelled ends a step that was running when the build was
	// cancelled (Ctrl-C, SIGTERM): its error is the cancellation, not a fault.
	StatusCancelled Status = "cancelled"

	// Check mode (Options.Check): a checked step starts "checking" and
	// ends "identical" or "differs" (with Event.Check), or "failed".
	StatusChecking  Status = "checking"
	StatusIdentical Status = "identical"
	StatusDiffers   Status = "differs"
)

// Event is one entry of the typed event stream that feeds the progress
// display, plain logs and --json.
type Event struct {
	Time       time.Time `json:"time"`
	Step       string    `json:"step"`
	Status     Status    `json:"status"`
	Key        string    `json:"key,omitempty"`
	DurationMS int64     `json:"duration_ms,omitempty"`
	Bytes      int64     `json:"bytes,omitempty"`
	Reason     string    `json:"reason,omitempty"`
	Line       string    `json:"line,omitempty"`
	Error      string    `json:"error,omitempty"`
	LogPath    string    `json:"log_path,omitempty"`
	SSH        *SSHInfo  `json:"ssh,omitempty"` // status waiting
	// Remote marks a step built by the executor (started, done, failed).
	Remote bool `json:"remote,omitempty"`

	// Check says what differs from the cached result (status differs).
	Check *CheckReport `json:"check,omitempty"`
}
