//! Rule test results as JUnit XML, for CI systems.

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use super::SuiteReport;

/// `report` as a JUnit XML document: one test suite per test file, one test
/// case per case; a failure carries the side-by-side comparison and traces.
pub fn junit_xml(report: &SuiteReport) -> Result<String, quick_junit::SerializeError> {
    let mut junit = Report::new("kairo test");
    for file in &report.files {
        let name = file.path.display().to_string();
        let mut suite = TestSuite::new(name.as_str());
        if let Some(error) = &file.error {
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
            status.set_message(error.to_string());
            let mut case = TestCase::new("(reading the file)", status);
            case.set_classname(name.as_str());
            suite.add_test_case(case);
        }
        for case in &file.cases {
            let status = if case.passed() {
                TestCaseStatus::success()
            } else {
                let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
                let message = format!(
                    "{} expected action(s) missing, {} unexpected",
                    case.missing.len(),
                    case.unexpected.len()
                );
                status.set_message(message);
                status.set_description(case.describe_failure());
                status
            };
            let mut test_case = TestCase::new(case.name.as_str(), status);
            test_case.set_classname(name.as_str());
            suite.add_test_case(test_case);
        }
        junit.add_test_suite(suite);
    }
    if !report.left_out.is_empty() {
        let mut suite = TestSuite::new("loading rules and handlers");
        for problem in &report.left_out {
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
            status.set_message(problem.as_str());
            suite.add_test_case(TestCase::new(problem.as_str(), status));
        }
        junit.add_test_suite(suite);
    }
    junit.to_string()
}
